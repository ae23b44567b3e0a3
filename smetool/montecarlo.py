"""Chunked Monte-Carlo runner with exact streaming moments and checkpoint/resume.

A *path producer* turns a number of paths and a :class:`torch.Generator` into states at ``S``
fixed save times, ``(S, P, D)``. :func:`run_monte_carlo` draws the paths in chunks, evaluates test
functions on them and keeps, per (test function, save time), the count, mean and sum of squared
deviations in float64, merged chunk by chunk with Chan's parallel formula. Chunk ``c`` is driven by
a generator seeded from ``(seed, c)`` alone, so a run is reproducible bit for bit, the chunks can be
computed in any order, and an interrupted run resumed from its checkpoint ends with the same bits
as an uninterrupted one (the chunk statistics are merged in the same order).

References
----------
T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample variance: analysis
and recommendations", The American Statistician 37 (1983). B. P. Welford, Technometrics 4 (1962).
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from .brownian import Increments, as_increments
from .integrate import solve
from .sde import NoiseKind, as_sde

__all__ = [
    "PathProducer",
    "AntitheticPathProducer",
    "StreamingMoments",
    "MonteCarloResult",
    "run_monte_carlo",
    "SDEProducer",
    "chunk_seed",
]

_CHECKPOINT_VERSION = 1
MAX_AUTO_CHUNK = 2**16
TestFunction = Callable[[Tensor], Tensor]


@runtime_checkable
class PathProducer(Protocol):
    """Draws ``n_paths`` independent sample paths with the randomness of ``generator``.

    Returns states at ``S`` fixed save times, a floating tensor of shape ``(S, n_paths, D)`` on
    the generator's device. All randomness must come from ``generator`` (that is what makes a
    Monte-Carlo run reproducible and its chunks independent).
    """

    def __call__(self, n_paths: int, generator: torch.Generator) -> Tensor: ...


@runtime_checkable
class AntitheticPathProducer(Protocol):
    """A :class:`PathProducer` that can also produce the antithetic paths.

    With ``antithetic=True`` and a generator in the same state it must return the paths obtained
    with every Gaussian (or other symmetric) draw negated, consuming the generator identically.
    Any map of the draws that preserves their joint law is valid; negating symmetric increments is
    the usual one (it cancels the odd-order noise contributions).
    """

    def __call__(
        self, n_paths: int, generator: torch.Generator, *, antithetic: bool = False
    ) -> Tensor: ...


def chunk_seed(seed: int, *key: int) -> int:
    """A 63-bit seed for the generator of one chunk, from the run's seed and the chunk's key.

    Derived with :class:`numpy.random.SeedSequence` (``entropy=seed``, ``spawn_key=key``), which
    mixes its inputs with a hash designed for this purpose: different keys give statistically
    independent streams, and the value does not depend on the Python process.
    """
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    lo, hi = (int(v) for v in state.generate_state(2, dtype=np.uint32))
    return ((hi & 0x7FFFFFFF) << 32) | lo


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


class StreamingMoments:
    """Count, mean and sum of squared deviations (``M2``) of a stream of samples, in float64.

    Each update computes the batch's mean and ``M2`` in two passes on the batch's device and merges
    them into the running values with Chan's parallel formula

    ``n = nₐ + n_b``, ``δ = m_b − mₐ``, ``m = mₐ + δ n_b/n``, ``M2 = M2ₐ + M2_b + δ² nₐ n_b / n``,

    which is exact in exact arithmetic and numerically stable. The running values live on the CPU,
    so merging the same batches in the same order gives identical bits on any device.

    Parameters
    ----------
    shape : tuple of int, optional
        Shape of one sample (the statistic's shape); fixed by the first update when omitted.

    Examples
    --------
    >>> import torch
    >>> m = StreamingMoments()
    >>> m.update(torch.tensor([[1.0, 2.0]])); m.update(torch.tensor([[3.0]]))
    >>> float(m.mean[0]), float(m.variance[0]), m.count
    (2.0, 1.0, 3)
    """

    def __init__(self, shape: tuple[int, ...] | None = None):
        self.count = 0
        self.mean = None if shape is None else torch.zeros(shape, dtype=torch.float64)
        self.m2 = None if shape is None else torch.zeros(shape, dtype=torch.float64)

    def update(self, batch: Tensor) -> None:
        """Add samples ``batch`` of shape ``(*shape, n)`` (samples along the last axis)."""
        if not isinstance(batch, Tensor) or batch.ndim < 1:
            raise ValueError(
                "`batch` must be a tensor of shape (*shape, n) with samples along the last axis; "
                f"got {type(batch).__name__ if not isinstance(batch, Tensor) else tuple(batch.shape)}."
            )
        n = int(batch.shape[-1])
        if n == 0:
            return
        x = batch.to(torch.float64)
        mean = x.mean(dim=-1)
        m2 = ((x - mean.unsqueeze(-1)) ** 2).sum(dim=-1)
        self._merge_stats(n, mean.cpu(), m2.cpu())

    def merge(self, other: "StreamingMoments") -> "StreamingMoments":
        """Merge ``other`` into ``self`` (in place) and return ``self``."""
        if not isinstance(other, StreamingMoments):
            raise TypeError(f"`other` must be a StreamingMoments; got {type(other).__name__}.")
        if other.count:
            self._merge_stats(other.count, other.mean, other.m2)
        return self

    def _merge_stats(self, n: int, mean: Tensor, m2: Tensor) -> None:
        if self.mean is not None and tuple(self.mean.shape) != tuple(mean.shape):
            raise ValueError(
                f"samples of shape {tuple(mean.shape)} cannot be merged into moments of shape "
                f"{tuple(self.mean.shape)}."
            )
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean.clone(), m2.clone()
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total

    @property
    def variance(self) -> Tensor:
        """Unbiased sample variance ``M2 / (n − 1)`` (NaN for fewer than two samples)."""
        if self.mean is None:
            raise ValueError("no samples yet: the variance is undefined.")
        if self.count < 2:
            return torch.full_like(self.mean, float("nan"))
        return self.m2 / (self.count - 1)

    @property
    def stderr(self) -> Tensor:
        """Standard error of the mean, ``sqrt(variance / n)``."""
        return (self.variance / self.count).sqrt()

    def state_dict(self) -> dict[str, Any]:
        """The exact state (for checkpoints)."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "StreamingMoments":
        """Rebuild from :meth:`state_dict` (bit-exact)."""
        out = cls()
        out.count, out.mean, out.m2 = int(state["count"]), state["mean"], state["m2"]
        return out

    def __repr__(self) -> str:
        shape = None if self.mean is None else tuple(self.mean.shape)
        return f"StreamingMoments(count={self.count}, shape={shape})"


@dataclass(frozen=True)
class MonteCarloResult:
    """Sample means of test functions at the save times, with their standard errors.

    Attributes
    ----------
    names : tuple of str, (K,)
        Test-function names.
    times : tuple of float, (S,)
        Save times (labels; the save indices ``0 … S−1`` when none were given).
    means, variances, stderrs : Tensor, (K, S), float64
        Sample mean, unbiased per-sample variance and standard error ``sqrt(variance/count)``.
        With ``antithetic=True`` a sample is the average over an antithetic pair.
    count : int
        Number of samples (antithetic pairs when ``antithetic``).
    n_paths : int
        Simulated paths (``2 · count`` with antithetic pairs).
    seed, chunk_size, n_chunks : int
    antithetic : bool
    variance_reduction : Tensor (K, S) or None
        With antithetic pairs: ``σ²_single / (2 σ²_pair)``, the variance of an estimate from
        ``n_paths`` independent paths divided by that of the antithetic estimate with the same
        number of simulated paths, both estimated from this run (``> 1``: antithetic sampling
        helped).
    """

    names: tuple[str, ...]
    times: tuple[float, ...]
    means: Tensor
    variances: Tensor
    stderrs: Tensor
    count: int
    n_paths: int
    seed: int
    chunk_size: int
    n_chunks: int
    antithetic: bool = False
    variance_reduction: Tensor | None = field(default=None, repr=False)

    def ci(self, confidence: float = 0.95) -> tuple[Tensor, Tensor]:
        """Student-t confidence intervals ``mean ± t·stderr`` (``count − 1`` degrees of freedom)."""
        q = _t_quantile(confidence, self.count - 1)
        return self.means - q * self.stderrs, self.means + q * self.stderrs

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (tensors → lists, NaN/inf → None)."""
        out: dict[str, Any] = {
            "names": self.names, "times": self.times, "count": self.count,
            "n_paths": self.n_paths, "seed": self.seed, "chunk_size": self.chunk_size,
            "n_chunks": self.n_chunks, "antithetic": self.antithetic,
            "means": self.means, "variances": self.variances, "stderrs": self.stderrs,
        }
        if self.variance_reduction is not None:
            out["variance_reduction"] = self.variance_reduction
        return json_safe(out)

    def __repr__(self) -> str:
        lines = [
            f"MonteCarloResult(count={self.count}, n_paths={self.n_paths}, seed={self.seed}, "
            f"chunks={self.n_chunks}×{self.chunk_size}, antithetic={self.antithetic})"
        ]
        for k, name in enumerate(self.names):
            for s, t in enumerate(self.times):
                lines.append(f"  {name} @ t={t:g}: {self.means[k, s]:.6g} ± {self.stderrs[k, s]:.2g}")
        return "\n".join(lines)


def json_safe(obj: Any) -> Any:
    """``obj`` with tensors turned into lists and NaN/±inf into ``None`` (strict JSON)."""
    if isinstance(obj, Tensor):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    if dof < 1:
        return float("nan")
    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


# ---------------------------------------------------------------------------------------------
# Argument checks (one rule each)


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def check_path_count(value: Any, name: str = "n_paths") -> int:
    """A path count that gives a variance: an integer ≥ 2."""
    value = check_positive_int(value, name)
    if value < 2:
        raise ValueError(
            f"`{name}` must be at least 2 (a standard error needs a variance); got {value}."
        )
    return value


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got {seed!r}.")
    return int(seed)


def check_test_functions(test_functions: Any) -> dict[str, TestFunction]:
    if not isinstance(test_functions, Mapping) or not test_functions:
        raise ValueError(
            "`test_functions` must be a non-empty dict mapping names to functions (N, D) -> (N,); "
            f"got {test_functions!r}."
        )
    for name, g in test_functions.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"`test_functions` keys must be non-empty strings; got {name!r}.")
        if not callable(g):
            raise TypeError(f"`test_functions[{name!r}]` must be callable; got {type(g).__name__}.")
    return dict(test_functions)


def accepts_antithetic(producer: Callable) -> bool:
    """Whether ``producer`` takes the keyword ``antithetic`` (see :class:`AntitheticPathProducer`)."""
    try:
        params = inspect.signature(producer).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "antithetic" or p.kind is p.VAR_KEYWORD for p in params)


def check_antithetic_producer(producer: Callable, name: str) -> None:
    if not accepts_antithetic(producer):
        raise TypeError(
            f"antithetic=True needs `{name}` to accept the keyword `antithetic` and, when it is "
            "True, negate every symmetric random draw (see smetool.AntitheticPathProducer; "
            f"smetool.SDEProducer does this); got {producer!r}."
        )


def produce(producer: Callable, n: int, gen: torch.Generator, antithetic: bool | None,
            name: str = "producer") -> Tensor:
    """Call a producer and check its output is a floating ``(S, n, D)`` tensor."""
    xs = producer(n, gen) if antithetic is None else producer(n, gen, antithetic=antithetic)
    if not isinstance(xs, Tensor):
        raise TypeError(f"`{name}` must return a Tensor of shape (S, P, D); got {type(xs).__name__}.")
    if xs.ndim != 3 or xs.shape[1] != n:
        raise ValueError(
            f"`{name}` must return states of shape (S, P, D) with P = {n} paths; got "
            f"{tuple(xs.shape)}."
        )
    if not xs.is_floating_point():
        raise ValueError(f"`{name}` must return a floating tensor; got {xs.dtype}.")
    return xs


def evaluate_test_functions(test_functions: Mapping[str, TestFunction], xs: Tensor) -> Tensor:
    """Values of every test function at every save time, float64 ``(K, S, P)``.

    Each function is called once on the states of all save times flattened to ``(S·P, D)``, so it
    must act row by row.
    """
    S, P, D = xs.shape
    flat = xs.reshape(S * P, D)
    out = []
    for name, g in test_functions.items():
        v = g(flat)
        if not isinstance(v, Tensor) or tuple(v.shape) != (S * P,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"test function {name!r} must map states (N, D) to values (N,); called with "
                f"N = {S * P} (all {S} save times × {P} paths) it returned {shape}."
            )
        out.append(v.to(torch.float64).reshape(S, P))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# The chunk engine shared by run_monte_carlo and the weak-error estimators


def resolve_chunk_size(chunk_size: int | None, memory_budget: int, n_paths: int,
                       probe: Callable[[], int]) -> int:
    """An explicit ``chunk_size``, or the largest one whose output fits half of ``memory_budget``.

    ``probe()`` returns the bytes one path costs (producer outputs and float64 values of a chunk);
    the other half of the budget is left for the producer's own working memory, which cannot be
    measured portably. Automatic chunks are also capped at :data:`MAX_AUTO_CHUNK` paths, so that a
    producer with a large working set (e.g. all Brownian increments of a long path) stays bounded;
    pass ``chunk_size`` to go beyond.
    """
    budget = check_positive_int(memory_budget, "memory_budget")
    if chunk_size is not None:
        return min(check_positive_int(chunk_size, "chunk_size"), n_paths)
    per_path = max(1, probe())
    return max(1, min(n_paths, MAX_AUTO_CHUNK, budget // (2 * per_path)))


def run_chunks(
    evaluate: Callable[[int, int], dict[str, Tensor]],
    n_samples: int,
    chunk_size: int,
    *,
    fingerprint: dict[str, Any],
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int,
    progress: bool,
    desc: str,
    paths_per_sample: int = 1,
) -> dict[str, StreamingMoments]:
    """Evaluate chunks ``0 … n_chunks−1`` in order, merging each into named accumulators.

    ``evaluate(size, chunk_index)`` returns ``{accumulator name: samples (*shape, n)}``. With a
    checkpoint path, the accumulators are written atomically every ``checkpoint_every`` chunks and
    after the last one, and a run with the same fingerprint resumes after the last chunk written.
    """
    n_chunks = math.ceil(n_samples / chunk_size)
    path = None if checkpoint is None else Path(checkpoint)
    acc: dict[str, StreamingMoments] = {}
    start = 0
    if path is not None and path.exists():
        start, acc = _load_checkpoint(path, fingerprint)
    done = min(start * chunk_size, n_samples)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_samples * paths_per_sample, initial=done * paths_per_sample,
                   desc=desc, unit="path", unit_scale=True, leave=False)
    try:
        for c in range(start, n_chunks):
            size = min(chunk_size, n_samples - c * chunk_size)
            for name, samples in evaluate(size, c).items():
                if not bool(torch.isfinite(samples).all()):
                    raise FloatingPointError(
                        f"non-finite test-function values in chunk {c} ({name}); the producer "
                        "diverged on some paths or a test function overflowed. Use a smaller step "
                        "or check the producer."
                    )
                acc.setdefault(name, StreamingMoments()).update(samples)
            if bar is not None:
                bar.update(size * paths_per_sample)
            if path is not None and ((c + 1) % checkpoint_every == 0 or c + 1 == n_chunks):
                _save_checkpoint(path, fingerprint, c + 1, acc)
    finally:
        if bar is not None:
            bar.close()
    return acc


def _save_checkpoint(path: Path, fingerprint: dict, next_chunk: int,
                     acc: Mapping[str, StreamingMoments]) -> None:
    state = {
        "version": _CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "next_chunk": next_chunk,
        "moments": {k: v.state_dict() for k, v in acc.items()},
    }
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    # os.replace is atomic on POSIX and Windows: a reader sees the old or the new file, never half.
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw content of a checkpoint file (fingerprint, next chunk, accumulator states)."""
    try:
        state = torch.load(Path(path), weights_only=True)
    except Exception as exc:  # unreadable or truncated: say which file and why
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({exc}); delete it to start over."
        ) from exc
    if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a smetool Monte-Carlo checkpoint of version "
            f"{_CHECKPOINT_VERSION}; delete it to start over."
        )
    return state


def _load_checkpoint(path: Path, fingerprint: dict) -> tuple[int, dict[str, StreamingMoments]]:
    state = read_checkpoint(path)
    saved = state["fingerprint"]
    if saved != fingerprint:
        diffs = [
            f"{k}: checkpoint {saved.get(k)!r} vs now {fingerprint.get(k)!r}"
            for k in sorted(set(saved) | set(fingerprint)) if saved.get(k) != fingerprint.get(k)
        ]
        raise ValueError(
            f"checkpoint {str(path)!r} belongs to a different run ({'; '.join(diffs)}). Pass the "
            "same arguments to resume it, or another `checkpoint` path (or delete the file) to "
            "start a new run."
        )
    acc = {k: StreamingMoments.from_state_dict(v) for k, v in state["moments"].items()}
    return int(state["next_chunk"]), acc


# ---------------------------------------------------------------------------------------------


def run_monte_carlo(
    producer: PathProducer | AntitheticPathProducer,
    test_functions: Mapping[str, TestFunction],
    n_paths: int,
    *,
    seed: int,
    chunk_size: int | None = None,
    memory_budget: int = 2**28,
    device: str | torch.device | None = None,
    times: Sequence[float] | None = None,
    antithetic: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    tag: str = "",
    progress: bool = True,
) -> MonteCarloResult:
    """Estimate ``E g(X_t)`` for several test functions ``g`` and save times ``t``.

    Parameters
    ----------
    producer : PathProducer
        ``producer(n, generator) -> (S, n, D)`` states at ``S`` save times (see
        :class:`PathProducer`); with ``antithetic=True`` it must accept ``antithetic=`` (see
        :class:`AntitheticPathProducer`).
    test_functions : dict of str to callable
        Each ``g`` maps states ``(N, D)`` to values ``(N,)``, row by row (it is called once per
        chunk on all save times flattened together).
    n_paths : int
        Number of independent samples (antithetic pairs when ``antithetic``).
    seed : int
        Non-negative; chunk ``c`` uses a generator seeded with :func:`chunk_seed(seed, c)
        <chunk_seed>`, on ``device``.
    chunk_size : int, optional
        Paths per chunk. Default: the largest chunk, up to 65,536 paths, whose outputs take at most
        half of ``memory_budget`` bytes (measured with a 2-path probe call). Results are bit-identical
        for the same ``(seed, chunk_size)``; other chunk sizes give other, equally valid samples.
    memory_budget : int
        Bytes, used only when ``chunk_size`` is omitted.
    device : str or torch.device, optional
        Where the generators live (the producer computes there); default CPU.
    times : sequence of float, optional
        Labels of the ``S`` save times; default ``0, 1, …, S−1``.
    antithetic : bool
        Evaluate each chunk twice with generators in the same state, the second time with
        ``antithetic=True``, and average each pair; also reports the variance-reduction factor.
    checkpoint : path, optional
        A file for the accumulators; an existing checkpoint of the same run is resumed and the
        result equals the uninterrupted run's bit for bit.
    checkpoint_every : int
        Write the checkpoint every this many chunks (and after the last).
    tag : str
        A description of the producer, stored in the checkpoint's fingerprint (a callable cannot
        be fingerprinted: change the tag when the producer changes).
    progress : bool
        Show a tqdm bar (paths done, rate, ETA).

    Returns
    -------
    MonteCarloResult

    Raises
    ------
    ValueError
        Invalid counts, seed, times; producer or test-function outputs of the wrong shape; a
        checkpoint of a different run.
    TypeError
        A non-callable test function; ``antithetic=True`` with a producer that lacks the keyword.
    FloatingPointError
        Non-finite test-function values.

    Examples
    --------
    >>> import torch
    >>> from smetool.montecarlo import run_monte_carlo
    >>> def gbm(n, gen):  # exact GBM at t = 1, mu = 0, sigma = 0.5
    ...     z = torch.randn(1, n, 1, generator=gen, dtype=torch.float64)
    ...     return torch.exp(-0.125 + 0.5 * z)
    >>> r = run_monte_carlo(gbm, {"x": lambda x: x[:, 0]}, 10_000, seed=0, progress=False)
    >>> abs(float(r.means[0, 0]) - 1.0) < 5 * float(r.stderrs[0, 0])
    True
    """
    if not callable(producer):
        raise TypeError(f"`producer` must be callable (n_paths, generator) -> Tensor; got {producer!r}.")
    tests = check_test_functions(test_functions)
    n_paths = check_path_count(n_paths)
    seed = check_seed(seed)
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    dev = torch.device("cpu" if device is None else device)
    if antithetic:
        check_antithetic_producer(producer, "producer")
    flag = False if antithetic else None
    shape: dict[str, tuple[int, ...]] = {}

    def probe() -> int:
        xs = produce(producer, 2, _generator(dev, chunk_seed(seed, 2**31 - 1)), flag)
        calls = 2 if antithetic else 1
        return calls * (xs[:, 0].numel() * xs.element_size() + 8 * len(tests) * xs.shape[0])

    chunk = resolve_chunk_size(chunk_size, memory_budget, n_paths, probe)

    def values(n: int, c: int, anti: bool | None) -> Tensor:
        xs = produce(producer, n, _generator(dev, chunk_seed(seed, c)), anti)
        if shape.setdefault("xs", (xs.shape[0], xs.shape[2])) != (xs.shape[0], xs.shape[2]):
            raise ValueError(
                f"`producer` must return the same number of save times and dimension every call; "
                f"got (S, D) = {(xs.shape[0], xs.shape[2])} after {shape['xs']}."
            )
        return evaluate_test_functions(tests, xs)

    def evaluate(n: int, c: int) -> dict[str, Tensor]:
        if not antithetic:
            return {"main": values(n, c, None)}
        plus, minus = values(n, c, False), values(n, c, True)
        return {"main": 0.5 * (plus + minus), "single": torch.cat([plus, minus], dim=-1)}

    fingerprint = {
        "kind": "run_monte_carlo", "seed": seed, "n_paths": n_paths, "chunk_size": chunk,
        "names": list(tests), "tag": str(tag), "antithetic": bool(antithetic),
        "device": dev.type,
    }
    acc = run_chunks(evaluate, n_paths, chunk, fingerprint=fingerprint, checkpoint=checkpoint,
                     checkpoint_every=checkpoint_every, progress=progress,
                     desc="monte carlo", paths_per_sample=2 if antithetic else 1)
    main = acc["main"]
    S = main.mean.shape[1]
    labels = _check_times(times, S)
    reduction = None
    if antithetic:
        reduction = acc["single"].variance / (2.0 * main.variance)
    return MonteCarloResult(
        names=tuple(tests), times=labels, means=main.mean, variances=main.variance,
        stderrs=main.stderr, count=main.count, n_paths=main.count * (2 if antithetic else 1),
        seed=seed, chunk_size=chunk, n_chunks=math.ceil(n_paths / chunk),
        antithetic=bool(antithetic), variance_reduction=reduction,
    )


def _check_times(times: Sequence[float] | Tensor | None, S: int) -> tuple[float, ...]:
    if times is None:
        return tuple(float(i) for i in range(S))
    labels = tuple(float(t) for t in (times.tolist() if isinstance(times, Tensor) else times))
    if len(labels) != S:
        raise ValueError(f"`times` must have one entry per save time ({S}); got {len(labels)}.")
    return labels


class SDEProducer:
    """A path producer that integrates an SDE with :func:`smetool.solve`.

    Every path starts at ``x0``; the states at ``save_at`` are returned. With ``antithetic=True``
    the Brownian increments are negated, which preserves their law (they are symmetric) and
    consumes the generator identically; the extra draws of a scheme (e.g. Platen's two-point
    variables) are then shared by the pair, which is also law-preserving.

    Parameters
    ----------
    sde : SDE
        Any SDE :func:`smetool.solve` accepts, except SAMPLED noise with ``antithetic`` (its noise
        is drawn inside the SDE and cannot be negated from outside).
    x0 : Tensor, (D,)
        The common initial state; its device and dtype are the computation's.
    t_span : (float, float)
    dt : float
    method : Solver or str, optional
    save_at : sequence of float, optional
        Default ``(t0, t1)``; :attr:`times` holds them.
    increments : str or Increments, optional
        As for :func:`smetool.solve`; torchsde Brownian objects are refused (they ignore the
        generator, so every chunk would repeat the same paths).

    Examples
    --------
    >>> import torch
    >>> from smetool import FunctionSDE
    >>> from smetool.montecarlo import SDEProducer
    >>> gbm = FunctionSDE(lambda t, x: -x, lambda t, x: 0.2 * x)
    >>> prod = SDEProducer(gbm, torch.ones(1, dtype=torch.float64), (0.0, 1.0), dt=0.1)
    >>> prod(4, torch.Generator().manual_seed(0)).shape
    torch.Size([2, 4, 1])
    """

    def __init__(self, sde: Any, x0: Tensor, t_span: tuple[float, float], *, dt: float,
                 method: Any = None, save_at: Sequence[float] | None = None,
                 increments: Any = None):
        if not isinstance(x0, Tensor) or x0.ndim != 1:
            shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise ValueError(f"`x0` must be a 1-D tensor (D,) shared by every path; got {shape}.")
        inc = as_increments(increments)
        if inc.name == "torchsde":
            raise ValueError(
                "`increments` must draw from the generator; a torchsde Brownian object ignores it, "
                "so every Monte-Carlo chunk would repeat the same paths."
            )
        self.sde, self.x0, self.t_span, self.dt = as_sde(sde), x0, t_span, dt
        self.method, self.increments = method, inc
        t0, t1 = (float(t) for t in t_span)
        self.times = tuple(float(t) for t in save_at) if save_at is not None else (t0, t1)

    def __call__(self, n_paths: int, generator: torch.Generator, *,
                 antithetic: bool = False) -> Tensor:
        inc = self.increments
        if antithetic:
            if self.sde.noise_kind is NoiseKind.SAMPLED:
                raise ValueError(
                    "antithetic sampling needs the noise to come from Brownian increments; "
                    "noise_kind='sampled' draws it inside the SDE. Use antithetic=False."
                )
            inc = _Negated(inc)
        sol = solve(self.sde, self.x0, self.t_span, dt=self.dt, method=self.method,
                    generator=generator, save_at=self.times, increments=inc, n_paths=n_paths)
        return sol.xs

    def __repr__(self) -> str:
        return (f"SDEProducer({self.sde!r}, dt={self.dt:g}, method={self.method!r}, "
                f"times={self.times})")


class _Negated(Increments):
    """The increments of ``inner`` with their signs flipped (the same law for symmetric ones)."""

    def __init__(self, inner: Increments):
        self.inner = inner
        self.name = inner.name
        self.gaussian = inner.gaussian
        self.matched_moments = inner.matched_moments

    def sample(self, t0, t1, shape, generator, dtype, device):
        return -self.inner.sample(t0, t1, shape, generator, dtype, device)

    def __repr__(self) -> str:
        return f"Negated({self.inner!r})"
