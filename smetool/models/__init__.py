"""Models: batched two-layer networks and the dropout problem with its closed forms."""

from .dropout_problem import DropoutProblem, GradSecondMoment, default_problem
from .two_layer import TwoLayerNet, add_bias_feature

__all__ = ["TwoLayerNet", "add_bias_feature", "DropoutProblem", "GradSecondMoment",
           "default_problem"]
