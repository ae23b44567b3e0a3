"""smetool: stochastic modified equations of training algorithms, batched on CPU and GPU."""

from importlib.metadata import PackageNotFoundError, version as _version

from .brownian import (
    GaussianIncrements,
    Increments,
    RademacherIncrements,
    ThreePointIncrements,
    TorchsdeBrownian,
    brownian_bridge_split,
)
from .integrate import NonFiniteError, Solution, solve
from .noise import psd_factor
from .sde import SDE, FunctionSDE, NoiseKind, as_sde
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
]
