"""The chunk engine under every Monte-Carlo estimate: seeds, chunk sizes, execution, merging.

An estimate is split into chunks. A chunk is a pure function of its index: ``task(size, c)``
draws from generators seeded with :func:`chunk_seed` from the run's seed, the estimate's key and
``c``, and returns its samples; the engine reduces them to float64 sufficient statistics
(:class:`~smetool.stats.StreamingMoments`) inside the chunk and merges the chunks **in chunk
order**, so the result is bit-identical whether the chunks run here one after the other, on a
thread or process pool, or on a Dask cluster, in whatever order they finish, and whether or not
the run was interrupted and resumed from its checkpoint.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_positive_int
from ..device import exact_matmul, format_bytes, free_memory, steady_allocator
from ..kernels import compiled_kernels
from ..stats import StreamingMoments
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

__all__ = [
    "ChunkTask",
    "NonFiniteChunkError",
    "chunk_seed",
    "chunk_generator",
    "plan_chunk_size",
    "progress_label",
    "usable_memory",
    "chunk_moments",
    "run_chunks",
    "MAX_AUTO_CHUNK",
    "MEMORY_FRACTION",
]

MAX_AUTO_CHUNK = 2**16
"""Largest chunk chosen automatically on the CPU (pass ``chunk_size`` to go beyond); on CUDA only
the memory bounds a chunk."""

MEMORY_FRACTION = {"cuda": 0.8, "cpu": 0.5}
"""The share of a device's free memory that automatic chunks may fill (the rest is left to the
allocator's rounding and fragmentation and, on the CPU, to other processes)."""

ChunkTask = Callable[[int, int], Mapping[str, Tensor]]
"""``task(size, chunk_index) -> {accumulator name: samples (*shape, size)}``."""


class NonFiniteChunkError(FloatingPointError):
    """A chunk produced NaN or infinite samples.

    Attributes
    ----------
    chunk : int
        The chunk index.
    size : int
        Its number of samples.
    counts : dict of str to int
        Per accumulator, the number of samples with a non-finite value.
    context : str
        Where the chunk belongs (e.g. ``"at lr=0.04"``).
    """

    def __init__(self, chunk: int, size: int, counts: Mapping[str, int], context: str = ""):
        self.chunk, self.size, self.counts = int(chunk), int(size), dict(counts)
        self.context = context
        shown = ", ".join(f"{n} of {size} {k} samples non-finite" for k, n in counts.items() if n)
        where = f"{context}, chunk {chunk}" if context else f"chunk {chunk}"
        super().__init__(
            f"{where} diverged: {shown}; the chunks finished before it are kept (in the "
            "checkpoint, when there is one).")

    def with_context(self, context: str) -> NonFiniteChunkError:
        """The same error with ``context`` (e.g. the step) in front of its message."""
        return type(self)(self.chunk, self.size, self.counts, context)

    def __reduce__(self):  # rebuilt from its fields when it crosses a process boundary
        return (type(self), (self.chunk, self.size, self.counts, self.context))


def chunk_seed(seed: int, *key: int) -> int:
    """A 63-bit seed for the generator of one chunk, from the run's seed and the chunk's key.

    Derived with :class:`numpy.random.SeedSequence` (``entropy=seed``, ``spawn_key=key``), which
    mixes its inputs with a hash designed for this purpose: different keys give statistically
    independent streams, and the value does not depend on the Python process.
    """
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    lo, hi = (int(v) for v in state.generate_state(2, dtype=np.uint32))
    return ((hi & 0x7FFFFFFF) << 32) | lo


def chunk_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def usable_memory(device: torch.device, memory_budget: int | None) -> int | None:
    """``memory_budget``, or :data:`MEMORY_FRACTION` of the device's free memory (``None``:
    unknown)."""
    if memory_budget is not None:
        return check_positive_int(memory_budget, "memory_budget")
    free = free_memory(device)
    if free is None:
        return None
    return int(free * MEMORY_FRACTION.get(device.type, 0.5))


def progress_label(desc: str, paths_per_sample: int) -> str:
    """The progress bar's label: it counts paths per side, and says so when a sample simulates
    several paths (both sides, the negative controls, antithetic pairs)."""
    if paths_per_sample == 1:
        return desc
    return f"{desc}, paths per side (×{paths_per_sample} simulated)"


def plan_chunk_size(chunk_size: int | None, n_paths: int, *, device: torch.device,
                    memory_budget: int | None, bytes_per_path: Callable[[], int],
                    cap: int | None, checkpoint: Path | None = None, what: str = "a path") -> int:
    """The paths per chunk: checked against the memory when given, chosen from it when not.

    ``bytes_per_path()`` measures what one path of a chunk costs (working memory and outputs,
    :func:`~smetool.device.measure_bytes_per_path`); the memory is :func:`usable_memory`. A probe
    that raises leaves the memory unchecked: the first chunk then raises the same fault with the
    run's own path count in its message.

    * An explicit ``chunk_size`` is kept (at most ``n_paths``); off the CPU it is measured
      first and refused if it does not fit (on the CPU it is the caller's word, unmeasured).
    * A run resumed from ``checkpoint`` keeps the chunk size it was started with, unmeasured.
    * Otherwise every path goes into one chunk if that fits and ``n_paths ≤ cap``; else the
      chunk is ``cap`` or, where memory is the limit, the largest power of two that fits (a
      canonical size, so that small changes of the free memory do not change the result).

    Raises
    ------
    ValueError
        One line naming the memory per path, the memory available and the largest chunk that
        fits, when a path (or the requested chunk) does not fit.
    """
    if chunk_size is not None and device.type == "cpu":
        return min(check_positive_int(chunk_size, "chunk_size"), n_paths)
    if chunk_size is None and checkpoint is not None and checkpoint.exists():
        saved = read_checkpoint(checkpoint)["fingerprint"].get("chunk_size")
        if isinstance(saved, int) and saved >= 1:
            return min(saved, n_paths)
    budget = usable_memory(device, memory_budget)
    try:
        per_path = max(1, int(bytes_per_path()))
    except Exception:  # reported by the first chunk, with the run's numbers (see above)
        budget = None
        per_path = 1
    fit = None if budget is None else budget // per_path
    where = f"{format_bytes(budget or 0)} usable on {device.type}"
    if fit is not None and fit < 1:
        raise ValueError(
            f"{what} needs ≈ {format_bytes(per_path)} of memory per path (measured on a probe "
            f"run), more than the {where}: it cannot run here; choose a method or representation "
            "that needs less memory (or pass a larger memory_budget).")
    if chunk_size is not None:
        size = min(check_positive_int(chunk_size, "chunk_size"), n_paths)
        if fit is not None and size > fit:
            raise ValueError(
                f"`chunk_size` {size} does not fit: {what} needs ≈ {format_bytes(per_path)} per "
                f"path (measured on a probe run), so at most {fit} paths fit in the {where}; "
                f"pass chunk_size ≤ {fit}.")
        return size
    size = n_paths if cap is None else min(n_paths, cap)
    if fit is not None and size > fit:
        size = 1 << (fit.bit_length() - 1)  # the largest power of two ≤ fit
    return max(1, size)


def _nonfinite_samples(samples: Tensor) -> int:
    """Samples (entries along the last axis) with a non-finite value anywhere."""
    bad = ~torch.isfinite(samples)
    return int(bad.reshape(-1, samples.shape[-1]).any(dim=0).sum())


def chunk_moments(task: ChunkTask, size: int, chunk: int, compile: bool = False
                  ) -> dict[str, StreamingMoments]:
    """Run one chunk and reduce its samples to float64 moments (this is what an executor runs).

    The chunk runs with full-precision float32 matrix products (:func:`~smetool.device.exact_matmul`),
    with freed CPU memory kept for reuse (:func:`~smetool.device.steady_allocator`) and, with
    ``compile``, compiled kernels (:func:`~smetool.kernels.compiled_kernels`).

    Raises
    ------
    NonFiniteChunkError
        When any sample is NaN or infinite.
    """
    with exact_matmul(), steady_allocator(), compiled_kernels(compile):
        samples = task(size, chunk)
    counts = {name: _nonfinite_samples(v) for name, v in samples.items()}
    if any(counts.values()):
        raise NonFiniteChunkError(chunk, size, counts)
    out = {}
    for name, values in samples.items():
        moments = StreamingMoments()
        moments.update(values)
        out[name] = moments
    return out


def _warn_idle_workers(executor: Executor, n_samples: int, chunk_size: int, n_chunks: int) -> None:
    """Warn when a run has fewer chunks than the executor has workers (a chunk is the unit of
    parallelism: the rest would idle)."""
    slots = getattr(executor, "workers", None)
    if isinstance(slots, int) and n_chunks < slots:
        warnings.warn(
            f"{n_chunks} chunk(s) of {chunk_size} samples for {slots} workers leave "
            f"{slots - n_chunks} idle; a chunk_size of at most {math.ceil(n_samples / slots)} would "
            "use them all (another chunk size draws other, equally valid random numbers).",
            RuntimeWarning, stacklevel=3)


def run_chunks(
    task: ChunkTask,
    n_samples: int,
    chunk_size: int,
    *,
    fingerprint: Mapping[str, Any],
    checkpoint: Path | None,
    checkpoint_every: int = 1,
    progress: bool = True,
    desc: str = "monte carlo",
    paths_per_sample: int = 1,
    executor: Executor | None = None,
    compile: bool = False,
) -> dict[str, StreamingMoments]:
    """Run chunks ``0 … n_chunks−1`` and merge their moments in chunk order.

    Parameters
    ----------
    task : ChunkTask
        Must be picklable when ``executor`` runs in other processes.
    n_samples, chunk_size : int
    fingerprint : dict
        Everything that decides the bits of the result; a checkpoint of another fingerprint is
        refused.
    checkpoint : Path, optional
        The checkpoint file, written atomically every ``checkpoint_every`` merged chunks and
        after the last one; an existing one of the same run is resumed.
    progress : bool
    desc : str
        The progress bar's label.
    paths_per_sample : int
        Simulated paths per sample (for the progress bar, which counts samples — paths per side
        — and says how many paths each one simulates: "1.50k path" for 500 paths per side and
        three sides left a reader guessing).
    executor : Executor, optional
        Where to run the chunks; ``None`` runs them here, one after the other. All chunks are
        submitted at once (the executor queues them) and the unmerged ones are cancelled when a
        chunk fails or the run is interrupted. An executor with a ``workers`` count (e.g.
        :class:`~smetool.montecarlo.DaskExecutor`) gets a warning when there are fewer chunks
        than workers.
    compile : bool
        Run the chunks with compiled kernels (see :func:`chunk_moments`).

    Returns
    -------
    dict of str to StreamingMoments

    Raises
    ------
    NonFiniteChunkError
        From the first diverging chunk (in chunk order); the chunks before it are merged and
        checkpointed first.
    """
    n_chunks = math.ceil(n_samples / chunk_size)
    acc: dict[str, StreamingMoments] = {}
    start = 0
    if checkpoint is not None and checkpoint.exists():
        start, acc = load_checkpoint(checkpoint, fingerprint)
    sizes = [min(chunk_size, n_samples - c * chunk_size) for c in range(n_chunks)]
    bar = None
    if progress:
        from tqdm.auto import tqdm  # tqdm is only needed for the bar

        done = sum(sizes[:start])
        bar = tqdm(total=n_samples, initial=done, desc=progress_label(desc, paths_per_sample),
                   unit="path", unit_scale=True, leave=False)

    def merge(c: int, moments: Mapping[str, StreamingMoments]) -> None:
        for name, m in moments.items():
            if name in acc and acc[name].shape not in (None, m.shape):
                raise ValueError(
                    f"chunk {c} gave {name!r} samples of shape {m.shape}, earlier chunks "
                    f"{acc[name].shape}: a producer must return the same number of save times "
                    "and dimension every call.")
            acc.setdefault(name, StreamingMoments()).merge(m)
        if bar is not None:
            bar.update(sizes[c])
        if checkpoint is not None and ((c + 1) % checkpoint_every == 0 or c + 1 == n_chunks):
            save_checkpoint(checkpoint, fingerprint, c + 1, acc)

    try:
        if executor is None:
            for c in range(start, n_chunks):
                merge(c, chunk_moments(task, sizes[c], c, compile))
        else:
            _warn_idle_workers(executor, n_samples, chunk_size, n_chunks)
            futures: dict[int, Future] = {
                c: executor.submit(chunk_moments, task, sizes[c], c, compile)
                for c in range(start, n_chunks)
            }
            try:
                for c in range(start, n_chunks):  # in chunk order, whatever finishes first
                    merge(c, futures[c].result())
            finally:
                for f in futures.values():
                    f.cancel()
    finally:
        if bar is not None:
            bar.close()
    return acc
