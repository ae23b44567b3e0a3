"""The one options object of every Monte-Carlo estimate in smetool."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checks import check_path_count, check_positive_int, check_seed

__all__ = ["MonteCarloOptions"]


@dataclass(frozen=True)
class MonteCarloOptions:
    """How a Monte-Carlo estimate is run: paths, chunks, seed, device, dtype, checkpoints, progress.

    Every Monte-Carlo function of smetool (:func:`~smetool.run_monte_carlo`,
    :func:`~smetool.weak_error`, :func:`~smetool.richardson_monte_carlo`, :func:`~smetool.verify`)
    takes these options as its ``n_paths`` argument, either as this object or as a path count
    followed by any of its fields as keywords (``weak_error(..., 20_000, seed=1, chunk_size=5_000)``).

    Parameters
    ----------
    n_paths : int
        Samples per estimate (per step, per side), at least 2.
    seed : int
        Non-negative. Chunk ``c`` of estimate key ``k`` draws from a generator seeded with
        :func:`~smetool.montecarlo.chunk_seed(seed, *k, c, …) <smetool.montecarlo.chunk_seed>`,
        so the result does not depend on how or where the chunks run.
    chunk_size : int, optional
        Paths per chunk. The bits of a result depend on ``(seed, chunk_size)`` and on nothing else
        of the run; other chunk sizes give other, equally valid samples. Default: chosen by the
        estimator from ``memory_budget`` (or, for :func:`~smetool.verify`, ``min(n_paths, 20000)``).
    memory_budget : int
        Bytes, used only to choose a default ``chunk_size``.
    device : str or torch.device, optional
        Where the simulation and the generators live (default CPU). The statistics are always
        accumulated in float64 on the CPU.
    dtype : torch.dtype
        Precision of the simulation where the estimator builds the states itself
        (:func:`~smetool.verify`); default float64.
    checkpoint : path, optional
        A folder for the checkpoint files of the run (one per step or learning rate); a run
        restarted with the same arguments resumes after the last finished chunk and ends with
        the same bits; a checkpoint of other arguments is refused.
    checkpoint_every : int
        Write the checkpoint every this many chunks (and after the last).
    progress : bool
        Show tqdm progress bars.
    executor : concurrent.futures.Executor, optional
        Run the chunks there (threads, processes, a Dask client's executor); the chunk results
        are merged in chunk order, so the result is bit-identical to a local run.

    Raises
    ------
    ValueError
        A path count below 2, a negative seed, a non-positive chunk size, budget or interval.
    TypeError
        A ``device``, ``dtype`` or ``executor`` of the wrong type.
    """

    n_paths: int
    seed: int = 0
    chunk_size: int | None = None
    memory_budget: int = 2**28
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float64
    checkpoint: Path | None = None
    checkpoint_every: int = 1
    progress: bool = True
    executor: Executor | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "n_paths", check_path_count(self.n_paths))
        set_(self, "seed", check_seed(self.seed))
        if self.chunk_size is not None:
            set_(self, "chunk_size", check_positive_int(self.chunk_size, "chunk_size"))
        set_(self, "memory_budget", check_positive_int(self.memory_budget, "memory_budget"))
        set_(self, "checkpoint_every", check_positive_int(self.checkpoint_every, "checkpoint_every"))
        try:
            set_(self, "device", torch.device("cpu" if self.device is None else self.device))
        except (TypeError, RuntimeError):
            raise TypeError(f"`device` must be a torch.device or a device name; got "
                            f"{self.device!r}.") from None
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a floating torch.dtype; got {self.dtype!r}.")
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, (str, os.PathLike)):
                raise TypeError(f"`checkpoint` must be a folder path; got {self.checkpoint!r}.")
            set_(self, "checkpoint", Path(self.checkpoint))
        if self.executor is not None and not isinstance(self.executor, Executor):
            raise TypeError(
                "`executor` must be a concurrent.futures.Executor (a thread or process pool, or "
                f"a Dask client's get_executor()); got {type(self.executor).__name__}.")
        set_(self, "progress", bool(self.progress))

    @classmethod
    def of(cls, options: MonteCarloOptions | int, **fields: Any) -> MonteCarloOptions:
        """``options`` itself (with ``fields`` replaced), or options built from a path count.

        Raises
        ------
        TypeError
            For anything else, or for a keyword that is not a field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise TypeError(
                f"unknown Monte-Carlo option {unknown[0]!r}; the options are "
                f"{', '.join(sorted(names))}.")
        if isinstance(options, MonteCarloOptions):
            return dataclasses.replace(options, **fields) if fields else options
        if isinstance(options, bool) or not isinstance(options, int):
            raise TypeError(
                "the Monte-Carlo options must be a MonteCarloOptions or a path count; got "
                f"{options!r}.")
        return cls(n_paths=options, **fields)

    def replace(self, **fields: Any) -> MonteCarloOptions:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **fields)

    def checkpoint_file(self, name: str) -> Path | None:
        """``checkpoint / name`` (the folder is created), or ``None`` without a checkpoint."""
        if self.checkpoint is None:
            return None
        self.checkpoint.mkdir(parents=True, exist_ok=True)
        return self.checkpoint / name

    def describe(self) -> dict[str, Any]:
        """The fields that decide the bits of a result, for fingerprints and reports."""
        return {"n_paths": self.n_paths, "seed": self.seed, "chunk_size": self.chunk_size,
                "device": self.device.type, "dtype": str(self.dtype).replace("torch.", "")}
