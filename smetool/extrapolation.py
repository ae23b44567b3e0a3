"""Richardson (Talay–Tubaro) extrapolation of weak approximations, with standard errors.

If ``E g(Y^h) = E g(X) + c_p h^p + c_{p+1} h^{p+1} + …`` (Talay & Tubaro 1990 for Euler–Maruyama,
``p = 1``), then for steps ``h, r h, r² h, …`` the combination ``Σ_j w_j E g(Y^{r^j h})`` with

``Σ_j w_j = 1``,  ``Σ_j w_j (r^j)^{p+k} = 0`` for ``k = 0 … L−2``

removes the first ``L − 1`` error terms: the remaining error is ``O(h^{p+L−1})``. Two levels,
``p = 1``, ``r = 2``: ``2 E(h) − E(2h)``; three levels, ``p = 2``: Kloeden–Platen (15.3.4),
``(32 E(h) − 12 E(2h) + E(4h)) / 21``.

References
----------
D. Talay, L. Tubaro, "Expansion of the global error for numerical schemes solving stochastic
differential equations", Stoch. Anal. Appl. 8(4) (1990) 483–509. P. E. Kloeden, E. Platen,
*Numerical Solution of SDEs*, Springer 1992, §15.3.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .montecarlo import (
    _check_times,
    _generator,
    check_antithetic_producer,
    check_positive_int,
    check_seed,
    check_test_functions,
    chunk_seed,
    evaluate_test_functions,
    json_safe,
    produce,
    resolve_chunk_size,
    run_chunks,
)

__all__ = ["Extrapolation", "richardson_weights", "richardson", "richardson_monte_carlo"]


@dataclass(frozen=True)
class Extrapolation:
    """An extrapolated expectation with its standard error.

    Attributes
    ----------
    value : Tensor, float64
        ``Σ_j w_j E_j``; the shape of one estimate (``(K, S)`` from
        :func:`richardson_monte_carlo`, ``()`` for scalars).
    stderr : Tensor or None
        From the weights and independent level errors (:func:`richardson`), or from the per-path
        combination of paired levels (:func:`richardson_monte_carlo`). ``None`` for exact inputs.
    weights : tuple of float, (L,)
        Finest step first.
    order : float
        Order of the remaining error, ``p + L − 1``.
    ratio : float
    steps : tuple of float or None
        Finest first, when known.
    paired : bool
        Whether ``stderr`` comes from paired per-path combinations.
    names, times : tuples or None
        Test functions and save times (Monte-Carlo runs).
    level_means, level_stderrs : Tensor (L, …) or None
        The per-level estimates (Monte-Carlo runs).
    independent_stderr : Tensor or None
        ``sqrt(Σ w_j² SE_j²)``: what independent levels with the same count would give; the
        variance-reduction factor of the pairing is ``(independent_stderr / stderr)²``.
    count : int or None
    """

    value: Tensor
    stderr: Tensor | None
    weights: tuple[float, ...]
    order: float
    ratio: float
    steps: tuple[float, ...] | None = None
    paired: bool = False
    names: tuple[str, ...] | None = None
    times: tuple[float, ...] | None = None
    level_means: Tensor | None = field(default=None, repr=False)
    level_stderrs: Tensor | None = field(default=None, repr=False)
    independent_stderr: Tensor | None = field(default=None, repr=False)
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (tensors → lists, NaN/inf → None)."""
        return json_safe(dict(self.__dict__))

    def __repr__(self) -> str:
        w = ", ".join(f"{x:.6g}" for x in self.weights)
        if self.value.ndim == 0:
            v = f"value={float(self.value):.8g}"
            if self.stderr is not None:
                v += f" ± {float(self.stderr):.2g}"
        else:
            v = f"value shape={tuple(self.value.shape)}"
        return (f"Extrapolation({v}, weights=({w}), remaining order={self.order:g}, "
                f"paired={self.paired})")


def richardson_weights(levels: int, order: float = 1, ratio: float = 2) -> np.ndarray:
    """Weights ``w_0 … w_{L−1}`` (finest step first) that cancel ``L − 1`` error terms.

    Parameters
    ----------
    levels : int
        ``L ≥ 2``, the number of steps ``h, r h, …, r^{L−1} h``.
    order : float
        ``p``, the order of the leading error term of the scheme (weak order).
    ratio : float
        ``r > 1``.

    Returns
    -------
    numpy.ndarray, (L,)

    Raises
    ------
    ValueError
        ``levels < 2``, ``order ≤ 0`` or ``ratio ≤ 1``.

    Examples
    --------
    >>> (richardson_weights(3, order=2) * 21).round(10).tolist()
    [32.0, -12.0, 1.0]
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"`levels` must be an integer ≥ 2; got {levels!r}.")
    if not (isinstance(order, (int, float)) and math.isfinite(order) and order > 0):
        raise ValueError(f"`order` must be a positive number (the scheme's weak order); got {order!r}.")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 1):
        raise ValueError(f"`ratio` must be a number > 1; got {ratio!r}.")
    scale = float(ratio) ** np.arange(levels)
    rows = [np.ones(levels)] + [scale ** (order + k) for k in range(levels - 1)]
    rhs = np.zeros(levels)
    rhs[0] = 1.0
    return np.linalg.solve(np.array(rows), rhs)


def _stack(values: Sequence[Any], name: str) -> Tensor:
    try:
        tensors = [torch.as_tensor(v, dtype=torch.float64).cpu() for v in values]
        return torch.stack(tensors)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"`{name}` must hold numbers or arrays of one common shape ({exc}).") from None


def richardson(
    estimates: Mapping[float, Any] | Sequence[Any],
    stderrs: Mapping[float, Any] | Sequence[Any] | None = None,
    *,
    order: float = 1,
    ratio: float = 2,
) -> Extrapolation:
    """Extrapolate estimates at steps ``h, r h, r² h, …`` to ``h → 0``.

    Parameters
    ----------
    estimates : mapping step -> estimate, or sequence (finest step first)
        Scalars or arrays of one shape. A mapping's steps must form ``h, r h, …`` with
        ``r = ratio``.
    stderrs : same layout as ``estimates``, optional
        Standard errors of independent estimates; the result's is ``sqrt(Σ w_j² SE_j²)``. For
        levels sampled on shared paths use :func:`richardson_monte_carlo`, whose standard error
        comes from the per-path combination.
    order : float
        ``p``, the leading error order of the scheme (1 for Euler–Maruyama, 2 for Platen).
    ratio : float
        ``r > 1``.

    Returns
    -------
    Extrapolation

    Raises
    ------
    ValueError
        Fewer than two levels; steps that are not geometric with ``ratio``; ``stderrs`` that do
        not match ``estimates``; negative standard errors.

    Examples
    --------
    >>> round(float(richardson([1.0 + 0.1, 1.0 + 0.2]).value), 12)   # e(h) = h, h = 0.1
    1.0
    """
    steps = None
    if isinstance(estimates, Mapping):
        steps = tuple(sorted(float(h) for h in estimates))
        for j, h in enumerate(steps):
            if not math.isclose(h, steps[0] * float(ratio) ** j, rel_tol=1e-9):
                raise ValueError(
                    f"the steps of `estimates` must be h, {ratio:g}·h, {ratio:g}²·h, … (ratio={ratio:g});"
                    f" got {list(steps)}."
                )
        by_step = {float(h): v for h, v in estimates.items()}
        values = [by_step[h] for h in steps]
        if stderrs is not None:
            if not isinstance(stderrs, Mapping) or sorted(float(h) for h in stderrs) != list(steps):
                raise ValueError("`stderrs` must be a mapping with the same steps as `estimates`.")
            se_by = {float(h): v for h, v in stderrs.items()}
            stderrs = [se_by[h] for h in steps]
    else:
        values = list(estimates)
    weights = richardson_weights(len(values), order, ratio)
    E = _stack(values, "estimates")
    w = torch.as_tensor(weights, dtype=torch.float64).reshape((-1,) + (1,) * (E.ndim - 1))
    se = None
    if stderrs is not None:
        SE = _stack(list(stderrs), "stderrs")
        if SE.shape != E.shape:
            raise ValueError(
                f"`stderrs` must match `estimates` in shape; got {tuple(SE.shape)} and {tuple(E.shape)}."
            )
        if bool((SE < 0).any()):
            raise ValueError("`stderrs` must be non-negative.")
        se = ((w * SE) ** 2).sum(0).sqrt()
    return Extrapolation(
        value=(w * E).sum(0), stderr=se, weights=tuple(float(x) for x in weights),
        order=float(order) + len(values) - 1, ratio=float(ratio), steps=steps,
    )


def richardson_monte_carlo(
    approximation: Callable[[float], Callable] | Mapping[float, Callable],
    test_functions: Mapping[str, Callable[[Tensor], Tensor]],
    n_paths: int,
    *,
    seed: int,
    step: float,
    levels: int = 2,
    order: float = 1,
    ratio: float = 2,
    antithetic: bool = False,
    chunk_size: int | None = None,
    memory_budget: int = 2**28,
    device: str | torch.device | None = None,
    times: Sequence[float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    tag: str = "",
    progress: bool = True,
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
    n_paths : int
    seed : int
    step : float
        The finest step ``h``.
    levels, order, ratio
        As for :func:`richardson_weights`.
    antithetic, chunk_size, memory_budget, device, times, checkpoint, checkpoint_every, tag, progress
        As for :func:`smetool.run_monte_carlo`.

    Returns
    -------
    Extrapolation
        ``value`` and ``stderr`` of shape ``(K, S)``, with the level means.

    Raises
    ------
    ValueError, TypeError
        As for :func:`richardson_weights` and :func:`smetool.run_monte_carlo`.
    """
    weights = richardson_weights(levels, order, ratio)
    tests = check_test_functions(test_functions)
    n_paths = check_positive_int(n_paths, "n_paths")
    seed = check_seed(seed)
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise ValueError(f"`step` must be a positive number; got {step!r}.")
    dev = torch.device("cpu" if device is None else device)
    steps = tuple(float(step) * float(ratio) ** j for j in range(levels))
    producers = []
    for h in steps:
        prod = approximation[h] if isinstance(approximation, Mapping) else approximation(h)
        if not callable(prod):
            raise TypeError(f"`approximation` must give a path producer for step {h:g}; got {prod!r}.")
        if antithetic:
            check_antithetic_producer(prod, "approximation")
        producers.append(prod)
    flag = False if antithetic else None
    w_dev: dict[str, Tensor] = {}

    def levels_at(n: int, c: int, anti: bool | None) -> Tensor:
        s = chunk_seed(seed, c)
        vals = torch.stack([
            evaluate_test_functions(tests, produce(p, n, _generator(dev, s), anti, "approximation"))
            for p in producers
        ])  # (L, K, S, n)
        w = w_dev.setdefault("w", torch.as_tensor(weights, dtype=torch.float64, device=vals.device))
        return torch.cat([vals, (w[:, None, None, None] * vals).sum(0, keepdim=True)])

    def evaluate(n: int, c: int) -> dict[str, Tensor]:
        if not antithetic:
            return {"main": levels_at(n, c, None)}
        return {"main": 0.5 * (levels_at(n, c, False) + levels_at(n, c, True))}

    def probe() -> int:
        xs = produce(producers[0], 2, _generator(dev, chunk_seed(seed, 2**31 - 1)), flag,
                     "approximation")
        return (2 if antithetic else 1) * levels * (xs[:, 0].numel() * xs.element_size()
                                                     + 8 * len(tests) * xs.shape[0])

    chunk = resolve_chunk_size(chunk_size, memory_budget, n_paths, probe)
    fingerprint = {
        "kind": "richardson_monte_carlo", "seed": seed, "n_paths": n_paths, "chunk_size": chunk,
        "names": list(tests), "tag": str(tag), "steps": list(steps), "order": float(order),
        "antithetic": bool(antithetic), "device": dev.type,
    }
    acc = run_chunks(evaluate, n_paths, chunk, fingerprint=fingerprint, checkpoint=checkpoint,
                     checkpoint_every=checkpoint_every, progress=progress,
                     desc="richardson", paths_per_sample=levels * (2 if antithetic else 1))
    main = acc["main"]
    mean, se = main.mean, main.stderr
    w = torch.as_tensor(weights, dtype=torch.float64)[:, None, None]
    return Extrapolation(
        value=mean[-1], stderr=se[-1], weights=tuple(float(x) for x in weights),
        order=float(order) + levels - 1, ratio=float(ratio), steps=steps, paired=True,
        names=tuple(tests), times=_check_times(times, mean.shape[-1]),
        level_means=mean[:-1], level_stderrs=se[:-1],
        independent_stderr=((w * se[:-1]) ** 2).sum(0).sqrt(), count=main.count,
    )
