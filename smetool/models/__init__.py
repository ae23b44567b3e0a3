"""Models: batched two-layer networks, the dropout problem with its closed forms, dropout on any
``nn.Module`` (functional, path-batched) with the exact last-layer moments and bundled data, and the
noisy quadratic and scale-invariant problems of the SAM, SignSGD and SGD-with-weight-decay
plug-ins."""

from .dropout_problem import DropoutProblem, GradSecondMoment, default_problem
from .net_dropout import LOSSES, DropoutLayer, NetDropoutModel
from .net_dropout_exact import LastLayerDropout, last_layer_reason, mask_enumeration
from .noisy_quadratic import NoisyQuadratic
from .scale_invariant import NormalisedQuadratic
from .two_layer import TwoLayerNet, add_bias_feature

__all__ = ["TwoLayerNet", "add_bias_feature", "DropoutProblem", "GradSecondMoment",
           "default_problem", "NetDropoutModel", "DropoutLayer", "LOSSES", "LastLayerDropout",
           "last_layer_reason", "mask_enumeration", "NoisyQuadratic", "NormalisedQuadratic"]
