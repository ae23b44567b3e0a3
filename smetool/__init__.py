"""smetool: stochastic modified equations of training algorithms, batched on CPU and GPU."""

from importlib.metadata import PackageNotFoundError, version as _version

from .algorithms import (
    SVAG,
    Adam,
    Algorithm,
    DropoutAlgorithm,
    DropoutProblem,
    DropoutSME,
    HeavyBallSGD,
    RMSprop,
    SGDLeastSquares,
    SGDTwoLayer,
    StochasticGradientAlgorithm,
    sqrt_scaling_rule,
)
from .analysis.report import AnalysisReport, analyze_dropout
from .brownian import (
    GaussianIncrements,
    Increments,
    RademacherIncrements,
    ThreePointIncrements,
    TorchsdeBrownian,
    brownian_bridge_split,
)
from .citation import citation
from .extrapolation import Extrapolation, richardson, richardson_monte_carlo, richardson_weights
from .integrate import NonFiniteError, Solution, solve
from .montecarlo import (
    AntitheticPathProducer,
    MonteCarloResult,
    PathProducer,
    SDEProducer,
    StreamingMoments,
    chunk_seed,
    run_monte_carlo,
)
from .noise import psd_factor
from .sde import SDE, FunctionSDE, NoiseKind, as_sde
from .verification import VerifyResult, VerifyRow, verify
from .weak import (
    ExactReference,
    FlaggedPoint,
    OrderFit,
    TwoTermFit,
    WeakErrorTable,
    WeakOrderWarning,
    fit_order,
    weak_error,
)
from .solvers import EulerMaruyama, Milstein, PlatenWeak2, SmallNoiseHeun, Solver, UnsupportedError

try:
    __version__ = _version("smetool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "SDE",
    "FunctionSDE",
    "NoiseKind",
    "as_sde",
    "solve",
    "Solution",
    "NonFiniteError",
    "Solver",
    "UnsupportedError",
    "EulerMaruyama",
    "Milstein",
    "PlatenWeak2",
    "SmallNoiseHeun",
    "Increments",
    "GaussianIncrements",
    "RademacherIncrements",
    "ThreePointIncrements",
    "TorchsdeBrownian",
    "brownian_bridge_split",
    "psd_factor",
    "run_monte_carlo",
    "MonteCarloResult",
    "StreamingMoments",
    "PathProducer",
    "AntitheticPathProducer",
    "SDEProducer",
    "chunk_seed",
    "weak_error",
    "WeakErrorTable",
    "ExactReference",
    "fit_order",
    "OrderFit",
    "TwoTermFit",
    "FlaggedPoint",
    "WeakOrderWarning",
    "richardson",
    "richardson_weights",
    "richardson_monte_carlo",
    "Extrapolation",
    "verify",
    "VerifyResult",
    "Algorithm",
    "DropoutAlgorithm",
    "DropoutProblem",
    "DropoutSME",
    "StochasticGradientAlgorithm",
    "SGDLeastSquares",
    "SGDTwoLayer",
    "HeavyBallSGD",
    "SVAG",
    "RMSprop",
    "Adam",
    "sqrt_scaling_rule",
    "VerifyRow",
]
