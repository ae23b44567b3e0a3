"""Richardson (Talay–Tubaro) extrapolation by Monte Carlo, every level on the same random draws.

References
----------
D. Talay, L. Tubaro, "Expansion of the global error for numerical schemes solving stochastic
differential equations", Stoch. Anal. Appl. 8(4) (1990) 483–509. P. E. Kloeden, E. Platen,
*Numerical Solution of SDEs*, Springer 1992, §15.3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..checks import check_positive, check_test_functions
from ..device import measure_bytes_per_path
from ..stats.extrapolation import Extrapolation, richardson_weights
from .engine import chunk_generator, chunk_seed, run_chunks
from .options import MonteCarloOptions
from .producers import (
    TestFunction,
    check_antithetic_producer,
    evaluate_test_functions,
    produce,
    producer_device,
    save_time_labels,
)

__all__ = ["richardson_monte_carlo"]


@dataclass(frozen=True)
class _RichardsonTask:
    """One chunk of :func:`richardson_monte_carlo` (a picklable pure function of the chunk)."""

    producers: tuple[Callable, ...]
    weights: tuple[float, ...]
    tests: Mapping[str, TestFunction]
    seed: int
    device: torch.device
    antithetic: bool

    def levels(self, n: int, c: int, anti: bool | None) -> Tensor:
        s = chunk_seed(self.seed, c)
        vals = torch.stack([
            evaluate_test_functions(
                self.tests, produce(p, n, chunk_generator(self.device, s), anti, "approximation").states)
            for p in self.producers
        ])  # (L, K, S, n)
        w = torch.as_tensor(self.weights, dtype=torch.float64, device=vals.device)
        return torch.cat([vals, (w[:, None, None, None] * vals).sum(0, keepdim=True)])

    def __call__(self, n: int, c: int) -> dict[str, Tensor]:
        if not self.antithetic:
            return {"main": self.levels(n, c, None)}
        return {"main": 0.5 * (self.levels(n, c, False) + self.levels(n, c, True))}


def richardson_monte_carlo(
    approximation: Callable[[float], Callable] | Mapping[float, Callable],
    test_functions: Mapping[str, TestFunction],
    n_paths: int | MonteCarloOptions,
    *,
    step: float,
    levels: int = 2,
    order: float = 1,
    ratio: float = 2,
    antithetic: bool = False,
    times: Sequence[float] | None = None,
    tag: str = "",
    **option_fields: Any,
) -> Extrapolation:
    """Richardson extrapolation by Monte Carlo, with every level run on the same random draws.

    In each chunk all levels ``h, r h, …`` get generators in the same state; per path the
    combination ``Σ_j w_j g(Y^{r^j h})`` is formed and its mean and standard error accumulated.
    The estimate is unbiased for the extrapolated expectation whatever the producers do with the
    draws; its variance is small when they turn the same draws into coupled paths (e.g. every
    level sums the same fine Brownian increments), which the reported ``independent_stderr``
    lets you check.

    Parameters
    ----------
    approximation : callable or mapping step -> path producer
    test_functions : dict of str to callable
    n_paths : int or MonteCarloOptions
        As for :func:`smetool.run_monte_carlo` (checkpoint file ``richardson.pt``).
    step : float
        The finest step ``h``.
    levels, order, ratio
        As for :func:`~smetool.richardson_weights`.
    antithetic, times, tag, **option_fields
        As for :func:`smetool.run_monte_carlo`.

    Returns
    -------
    Extrapolation
        ``value`` and ``stderr`` of shape ``(K, S)``, with the level means.

    Raises
    ------
    ValueError, TypeError
        As for :func:`~smetool.richardson_weights` and :func:`smetool.run_monte_carlo`.
    """
    weights = richardson_weights(levels, order, ratio)
    tests = check_test_functions(test_functions)
    opts = MonteCarloOptions.of(n_paths, **option_fields)
    step = check_positive(step, "step")
    steps = tuple(float(step) * float(ratio) ** j for j in range(levels))
    producers = []
    for h in steps:
        prod = approximation[h] if isinstance(approximation, Mapping) else approximation(h)
        if not callable(prod):
            raise TypeError(f"`approximation` must give a path producer for step {h:g}; got {prod!r}.")
        if antithetic:
            check_antithetic_producer(prod, "approximation")
        producers.append(prod)
    opts = opts.with_device(producer_device(producers[0]))
    task = _RichardsonTask(tuple(producers), tuple(float(w) for w in weights), tests, opts.seed,
                           opts.where, bool(antithetic))
    checkpoint = opts.checkpoint_file("richardson.pt")
    chunk = opts.plan_chunk(lambda: measure_bytes_per_path(lambda n: task(n, 2**31 - 1)),
                            checkpoint, "the approximation")
    fingerprint = {
        "kind": "richardson_monte_carlo", **opts.describe(), "chunk_size": chunk,
        "compile": opts.compiles(chunk), "names": list(tests), "tag": str(tag),
        "steps": list(steps), "order": float(order), "antithetic": bool(antithetic),
    }
    acc = run_chunks(task, opts.n_paths, chunk, fingerprint=fingerprint, checkpoint=checkpoint,
                     checkpoint_every=opts.checkpoint_every, progress=opts.progress,
                     desc="richardson", paths_per_sample=levels * (2 if antithetic else 1),
                     executor=opts.executor, compile=opts.compiles(chunk))
    main = acc["main"]
    mean, se = main.mean, main.stderr
    w = torch.as_tensor(weights, dtype=torch.float64)[:, None, None]
    return Extrapolation(
        value=mean[-1], stderr=se[-1], weights=tuple(float(x) for x in weights),
        order=float(order) + levels - 1, ratio=float(ratio), steps=steps, paired=True,
        names=tuple(tests), times=save_time_labels(times, mean.shape[-1]),
        level_means=mean[:-1], level_stderrs=se[:-1],
        independent_stderr=((w * se[:-1]) ** 2).sum(0).sqrt(), count=main.count,
    )
