"""Plug-ins: discrete training algorithms paired with their SMEs.

Every plug-in meets :class:`Algorithm`; :data:`~smetool.algorithms.registry.PLUGINS` lists those
the command line knows.
"""

from .adaptive import Adam, AdamSME, RMSprop, RMSpropSME, sde_constants, sqrt_scaling_rule
from .base import Algorithm, StochasticGradientAlgorithm, TestFunction
from .dropout import NOISE_REPRESENTATIONS, DropoutAlgorithm, DropoutSME
from .dropout_problem import DropoutProblem, GradSecondMoment, default_problem
from .momentum import HeavyBallSGD, HeavyBallSME
from .sgd import SGDSME, FiniteSumSGD, SGDLeastSquares, SGDTwoLayer
from .svag import SVAG, svag_coefficients

__all__ = [
    "Algorithm",
    "StochasticGradientAlgorithm",
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
    "SVAG",
    "svag_coefficients",
    "RMSprop",
    "RMSpropSME",
    "Adam",
    "AdamSME",
    "sqrt_scaling_rule",
    "sde_constants",
]
