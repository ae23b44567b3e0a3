"""The one options object of every Monte-Carlo estimate in smetool."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checks import check_path_count, check_positive_int, check_seed
from ..device import device_fingerprint
from .engine import MAX_AUTO_CHUNK, plan_chunk_size

__all__ = ["MonteCarloOptions", "COMPILE_MIN_PATHS"]

COMPILE_MIN_PATHS = 100_000
"""With ``compile=None``, kernels are compiled for CUDA runs of at least this many paths: compiling
costs tens of seconds once per process, which a short run does not earn back (on CPU the measured
gain of 1.3–1.9× pays only after minutes, so CPU runs stay eager unless asked)."""


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
        Paths per chunk. On one device (and torch/CUDA version) the bits of a result depend on
        ``(seed, chunk_size)`` and on nothing else of the run; other chunk sizes give other,
        equally valid samples. Default: every path in one chunk when it fits in memory (on the
        CPU at most 65,536 paths, 20,000 for :func:`~smetool.verify`), else the largest power of
        two that fits; the memory per path is measured on a short probe run
        (:func:`~smetool.device.measure_bytes_per_path`). A chunk size that cannot fit is refused
        before any chunk runs. The size used is in the result and in the checkpoint, and a
        resumed run keeps it.
    max_chunk : int, optional
        The largest automatic chunk (default: 65,536 paths on the CPU, 20,000 for
        :func:`~smetool.verify`; no limit but the memory on CUDA).
    memory_budget : int, optional
        Bytes a chunk may use. Default: 80 % of the device's free memory on CUDA, 50 % of the
        available memory on the CPU (unknown: no memory bound).
    device : str or torch.device, optional
        Where the simulation and the generators live. Default: the producer's device (its
        ``device`` attribute or the device of its ``x0``), else the CPU. The statistics are
        always accumulated in float64 on the CPU.
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
    compile : bool, optional
        Run the hot kernels (:mod:`smetool.kernels`) compiled with :func:`torch.compile`.
        Compiled and eager kernels agree to round-off, not bit for bit. Default: on for CUDA runs
        of at least :data:`COMPILE_MIN_PATHS` paths, else off.

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
    max_chunk: int | None = None
    memory_budget: int | None = None
    device: torch.device | None = None
    dtype: torch.dtype = torch.float64
    checkpoint: Path | None = None
    checkpoint_every: int = 1
    progress: bool = True
    executor: Executor | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "n_paths", check_path_count(self.n_paths))
        set_(self, "seed", check_seed(self.seed))
        if self.chunk_size is not None:
            set_(self, "chunk_size", check_positive_int(self.chunk_size, "chunk_size"))
        if self.max_chunk is not None:
            set_(self, "max_chunk", check_positive_int(self.max_chunk, "max_chunk"))
        if self.memory_budget is not None:
            set_(self, "memory_budget", check_positive_int(self.memory_budget, "memory_budget"))
        set_(self, "checkpoint_every", check_positive_int(self.checkpoint_every, "checkpoint_every"))
        if self.device is not None:
            try:
                set_(self, "device", torch.device(self.device))
            except (TypeError, RuntimeError):
                raise TypeError(f"`device` must be a torch.device or a device name; got "
                                f"{self.device!r}.") from None
        if self.compile is not None and not isinstance(self.compile, bool):
            raise TypeError(f"`compile` must be True, False or None (automatic); got "
                            f"{self.compile!r}.")
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

    @property
    def where(self) -> torch.device:
        """The device of the run: :attr:`device`, or the CPU when it is not set."""
        return torch.device("cpu") if self.device is None else self.device

    def with_device(self, *candidates: Any) -> MonteCarloOptions:
        """These options with :attr:`device` set: kept when given, else the first device among
        ``candidates`` that is not ``None``, else the CPU."""
        if self.device is not None:
            return self
        found = next((c for c in candidates if c is not None), "cpu")
        return self.replace(device=torch.device(found))

    def chunk_cap(self, cpu_default: int) -> int | None:
        """The largest automatic chunk: :attr:`max_chunk`, else ``cpu_default`` on the CPU and no
        limit (the memory decides) elsewhere."""
        if self.max_chunk is not None:
            return self.max_chunk
        return cpu_default if self.where.type == "cpu" else None

    def plan_chunk(self, bytes_per_path: Callable[[], int], checkpoint: Path | None,
                   what: str) -> int:
        """The paths per chunk of an estimate with these options (:func:`plan_chunk_size`, with
        the automatic chunk capped at :meth:`chunk_cap` of ``MAX_AUTO_CHUNK``)."""
        return plan_chunk_size(
            self.chunk_size, self.n_paths, device=self.where, memory_budget=self.memory_budget,
            bytes_per_path=bytes_per_path, cap=self.chunk_cap(MAX_AUTO_CHUNK),
            checkpoint=checkpoint, what=what)

    def compiles(self, paths: int) -> bool:
        """Whether a run of ``paths`` paths per chunk compiles its kernels (see :attr:`compile`)."""
        if self.compile is not None:
            return self.compile
        return self.where.type == "cuda" and paths >= COMPILE_MIN_PATHS

    def describe(self) -> dict[str, Any]:
        """The fields that decide the bits of a result, for fingerprints and reports: paths, seed,
        chunk size, dtype, whether the kernels are compiled, and the device, GPU model, torch and
        CUDA versions (:func:`~smetool.device.device_fingerprint`)."""
        return {"n_paths": self.n_paths, "seed": self.seed, "chunk_size": self.chunk_size,
                **device_fingerprint(self.where), "dtype": str(self.dtype).replace("torch.", ""),
                "compile": self.compiles(self.chunk_size or self.n_paths)}
