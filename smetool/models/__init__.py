"""Models: batched two-layer networks, the dropout problem with its closed forms, and the noisy
quadratic and scale-invariant problems of the SAM, SignSGD and SGD-with-weight-decay plug-ins."""

from .dropout_problem import DropoutProblem, GradSecondMoment, default_problem
from .noisy_quadratic import NoisyQuadratic
from .scale_invariant import NormalisedQuadratic
from .two_layer import TwoLayerNet, add_bias_feature

__all__ = ["TwoLayerNet", "add_bias_feature", "DropoutProblem", "GradSecondMoment",
           "default_problem", "NoisyQuadratic", "NormalisedQuadratic"]
