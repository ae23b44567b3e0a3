"""Plug-ins: discrete training algorithms paired with their SMEs.

Every plug-in meets :class:`Algorithm`; :data:`~smetool.algorithms.registry.PLUGINS` lists those
the command line knows.
"""

from .base import Algorithm, TestFunction
from .dropout import NOISE_REPRESENTATIONS, DropoutAlgorithm, DropoutSME
from .dropout_problem import DropoutProblem, GradSecondMoment, default_problem
from .momentum import HeavyBallSGD, HeavyBallSME
from .sgd import SGDSME, FiniteSumSGD, SGDLeastSquares, SGDTwoLayer

__all__ = [
    "Algorithm",
    "TestFunction",
    "DropoutAlgorithm",
    "DropoutSME",
    "DropoutProblem",
    "GradSecondMoment",
    "default_problem",
    "NOISE_REPRESENTATIONS",
    "FiniteSumSGD",
    "SGDLeastSquares",
    "SGDTwoLayer",
    "SGDSME",
    "HeavyBallSGD",
    "HeavyBallSME",
]
