"""Monte Carlo: one chunk engine and one options object under every estimate.

:class:`MonteCarloOptions` says how a run goes (paths, chunks, seed, device, dtype, checkpoint,
progress, executor); :mod:`~smetool.montecarlo.engine` runs and merges the chunks, here or on a
Dask cluster (:func:`dask_executor`);
:func:`run_monte_carlo` estimates expectations, :func:`weak_error` weak errors (the pipeline of
:func:`smetool.verify` too) and :func:`richardson_monte_carlo` extrapolated expectations.
"""

from .checkpoint import read_checkpoint
from .cluster import DaskExecutor, check_scheduler, dask_executor
from .control import TangentPaths, VarianceReduction
from .engine import NonFiniteChunkError, chunk_seed, run_chunks
from .extrapolation import richardson_monte_carlo
from .options import MonteCarloOptions
from .producers import (
    AntitheticPathProducer,
    PathProducer,
    PathSample,
    SDEProducer,
    TestFunction,
    evaluate_test_functions,
)
from .run import MonteCarloResult, run_monte_carlo
from .weak import ExactReference, WeakErrorTable, weak_error

__all__ = [
    "MonteCarloOptions",
    "NonFiniteChunkError",
    "chunk_seed",
    "run_chunks",
    "read_checkpoint",
    "DaskExecutor",
    "dask_executor",
    "check_scheduler",
    "TangentPaths",
    "VarianceReduction",
    "PathProducer",
    "AntitheticPathProducer",
    "PathSample",
    "SDEProducer",
    "TestFunction",
    "evaluate_test_functions",
    "MonteCarloResult",
    "run_monte_carlo",
    "ExactReference",
    "WeakErrorTable",
    "weak_error",
    "richardson_monte_carlo",
]
