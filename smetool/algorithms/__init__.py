"""Plug-ins: discrete training algorithms paired with their SMEs.

Every plug-in meets :class:`Algorithm`; a :class:`PluginSpec` declares it for the command line
(:func:`~smetool.algorithms.registry.plugins` lists smetool's and those of other packages).
"""

from .adam import Adam, AdamSME
from .adaptive import AdaptiveAlgorithm, AdaptiveSME, sde_constants, sqrt_scaling_rule
from .base import (
    Algorithm,
    HasExactMoments,
    Perturbation,
    SeparableNoise,
    SeparableStochasticGradient,
    SMEPart,
    StochasticGradientAlgorithm,
    TestFunction,
)
from .base import NegativeControl as NegativeControl
from .capabilities import HasLandscape, Regularizer
from .derive import DerivedSME, SampledDerivedSME, derive_sme
from .derive_batch import BatchMean
from .derive_core import DifferentiableUpdate
from .derived import DerivedAlgorithm
from .derived_two_layer import CovarianceSplit, DropConnect, DropoutSGD, covariance_split
from .dropout import DropoutAlgorithm, DropoutSME
from .dropout_net import ExactNetDropout, NetDropout, builtin_problem, dropout_net, net_dropout
from .dropout_net_sme import NetDropoutSME, SampledNetDropoutSME
from .dropout_noise import (
    NOISE_REPRESENTATIONS,
    CovarianceNoise,
    FactorNoise,
    GaussianNoise,
    MaskPairNoise,
)
from .dropout_noise import DropoutNoise as DropoutNoise
from .gaussian_dropout import GaussianDropout
from .gradient import GradientDescent, GradientFlow, MinibatchSGD
from .momentum import HeavyBallSGD, HeavyBallSME
from .noise_laws import FiniteNoise, NoiseLaw, SampledNoise
from .registry import ENTRY_POINT_GROUP, get_plugin, plugins, register
from .rmsprop import RMSprop, RMSpropSME
from .sam import SAM, SAMSME, USAM, USAMSME
from .sgd import SGDSME, FiniteSumSGD, SGDLeastSquares
from .sgd_two_layer import SGDTwoLayer
from .sgd_wd import SGDWeightDecay, SGDWeightDecaySME
from .signsgd import SignSGD, SignSGDSME
from .spec import AnalysisSpec, Option, PluginBuildError, PluginSpec
from .svag import SVAG

__all__ = [
    "Algorithm",
    "StochasticGradientAlgorithm",
    "SeparableNoise",
    "SeparableStochasticGradient",
    "NegativeControl",
    "Perturbation",
    "SMEPart",
    "HasExactMoments",
    "HasLandscape",
    "Regularizer",
    "TestFunction",
    "PluginSpec",
    "AnalysisSpec",
    "GradientDescent",
    "GradientFlow",
    "MinibatchSGD",
    "net_dropout",
    "Option",
    "PluginBuildError",
    "ENTRY_POINT_GROUP",
    "plugins",
    "get_plugin",
    "register",
    "DropoutAlgorithm",
    "DropoutSME",
    "DropoutNoise",
    "FactorNoise",
    "GaussianNoise",
    "MaskPairNoise",
    "CovarianceNoise",
    "NOISE_REPRESENTATIONS",
    "dropout_net",
    "builtin_problem",
    "NetDropout",
    "ExactNetDropout",
    "NetDropoutSME",
    "SampledNetDropoutSME",
    "FiniteSumSGD",
    "SGDLeastSquares",
    "SGDTwoLayer",
    "SGDSME",
    "HeavyBallSGD",
    "HeavyBallSME",
    "SVAG",
    "AdaptiveAlgorithm",
    "AdaptiveSME",
    "RMSprop",
    "RMSpropSME",
    "Adam",
    "AdamSME",
    "USAM",
    "USAMSME",
    "SAM",
    "SAMSME",
    "SignSGD",
    "SignSGDSME",
    "SGDWeightDecay",
    "SGDWeightDecaySME",
    "sqrt_scaling_rule",
    "sde_constants",
    "derive_sme",
    "DerivedSME",
    "SampledDerivedSME",
    "DerivedAlgorithm",
    "FiniteNoise",
    "SampledNoise",
    "NoiseLaw",
    "BatchMean",
    "DifferentiableUpdate",
    "DropoutSGD",
    "DropConnect",
    "GaussianDropout",
    "CovarianceSplit",
    "covariance_split",
]
