"""``run_monte_carlo``: expectations of test functions at save times, with standard errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..checks import check_test_functions
from ..device import device_info, exact_matmul, measure_bytes_per_path
from ..jsonutil import json_safe
from ..stats import t_quantile
from .engine import chunk_generator, chunk_seed, run_chunks
from .options import MonteCarloOptions
from .producers import (
    AntitheticPathProducer,
    PathProducer,
    TestFunction,
    check_antithetic_producer,
    evaluate_test_functions,
    produce,
    producer_device,
    save_time_labels,
)

__all__ = ["MonteCarloResult", "run_monte_carlo"]


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
    device : dict
        :func:`~smetool.device.device_info` of the run (device, GPU model, torch and CUDA
        versions, matmul precision).
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
    device: dict[str, Any] = field(default_factory=dict, repr=False)

    def ci(self, confidence: float = 0.95) -> tuple[Tensor, Tensor]:
        """Student-t confidence intervals ``mean ± t·stderr`` (``count − 1`` degrees of freedom)."""
        q = t_quantile(confidence, self.count - 1)
        return self.means - q * self.stderrs, self.means + q * self.stderrs

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (tensors → lists, NaN/inf → None)."""
        out: dict[str, Any] = {
            "names": self.names, "times": self.times, "count": self.count,
            "n_paths": self.n_paths, "seed": self.seed, "chunk_size": self.chunk_size,
            "n_chunks": self.n_chunks, "antithetic": self.antithetic,
            "means": self.means, "variances": self.variances, "stderrs": self.stderrs,
            "device": self.device,
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


@dataclass(frozen=True)
class _MonteCarloTask:
    """One chunk of :func:`run_monte_carlo` (a picklable pure function of the chunk index)."""

    producer: Callable
    tests: Mapping[str, TestFunction]
    seed: int
    device: torch.device
    antithetic: bool

    def values(self, n: int, c: int, anti: bool | None) -> Tensor:
        gen = chunk_generator(self.device, chunk_seed(self.seed, c))
        return evaluate_test_functions(self.tests, produce(self.producer, n, gen, anti).states)

    def __call__(self, n: int, c: int) -> dict[str, Tensor]:
        if not self.antithetic:
            return {"main": self.values(n, c, None)}
        plus, minus = self.values(n, c, False), self.values(n, c, True)
        return {"main": 0.5 * (plus + minus), "single": torch.cat([plus, minus], dim=-1)}


def run_monte_carlo(
    producer: PathProducer | AntitheticPathProducer,
    test_functions: Mapping[str, TestFunction],
    n_paths: int | MonteCarloOptions,
    *,
    times: Sequence[float] | None = None,
    antithetic: bool = False,
    tag: str = "",
    **option_fields: Any,
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
    n_paths : int or MonteCarloOptions
        The number of independent samples (antithetic pairs when ``antithetic``) with the other
        options as keywords, or all the options (:class:`MonteCarloOptions`). Chunk ``c``
        draws from :func:`chunk_seed(seed, c) <smetool.montecarlo.chunk_seed>`. The default chunk
        holds every path when they fit in memory (on the CPU at most 65,536; see
        :class:`MonteCarloOptions`; the memory per path is measured on 2- and 4-path probe
        chunks). With a ``checkpoint`` folder the accumulators go to ``run_monte_carlo.pt``
        there.
    times : sequence of float, optional
        Labels of the ``S`` save times; default ``0, 1, …, S−1``.
    antithetic : bool
        Evaluate each chunk twice with generators in the same state, the second time with
        ``antithetic=True``, and average each pair; also reports the variance-reduction factor.
    tag : str
        A description of the producer, stored in the checkpoint's fingerprint (a callable cannot
        be fingerprinted: change the tag when the producer changes).
    **option_fields
        Fields of :class:`MonteCarloOptions` when ``n_paths`` is a count.

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
    NonFiniteChunkError
        Non-finite test-function values (a :class:`FloatingPointError`).

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
    opts = MonteCarloOptions.of(n_paths, **option_fields).with_device(producer_device(producer))
    if antithetic:
        check_antithetic_producer(producer, "producer")
    task = _MonteCarloTask(producer, tests, opts.seed, opts.where, bool(antithetic))
    checkpoint = opts.checkpoint_file("run_monte_carlo.pt")
    chunk = opts.plan_chunk(lambda: measure_bytes_per_path(lambda n: task(n, 2**31 - 1)),
                            checkpoint, "the producer")
    fingerprint = {
        "kind": "run_monte_carlo", **opts.describe(), "chunk_size": chunk,
        "compile": opts.compiles(chunk), "names": list(tests), "tag": str(tag),
        "antithetic": bool(antithetic),
    }
    acc = run_chunks(task, opts.n_paths, chunk, fingerprint=fingerprint, checkpoint=checkpoint,
                     checkpoint_every=opts.checkpoint_every, progress=opts.progress,
                     desc="monte carlo", paths_per_sample=2 if antithetic else 1,
                     executor=opts.executor, compile=opts.compiles(chunk))
    with exact_matmul():
        info = device_info(opts.where)
    main = acc["main"]
    labels = save_time_labels(times, main.mean.shape[1])
    reduction = acc["single"].variance / (2.0 * main.variance) if antithetic else None
    return MonteCarloResult(
        names=tuple(tests), times=labels, means=main.mean, variances=main.variance,
        stderrs=main.stderr, count=main.count, n_paths=main.count * (2 if antithetic else 1),
        seed=opts.seed, chunk_size=chunk, n_chunks=-(-opts.n_paths // chunk),
        antithetic=bool(antithetic), variance_reduction=reduction, device=info,
    )
