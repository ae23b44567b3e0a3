"""Weak errors with standard errors, and weak orders with confidence intervals.

:func:`weak_error` estimates ``E g(approximation_h) − E g(reference)`` for several step sizes ``h``
(or learning rates), with optional common random numbers and antithetic pairs, and reports the
variance reduction each achieved. :func:`fit_order` turns such a table into an order estimate:
a weighted least-squares fit of ``log|e|`` on ``log h`` with a confidence interval that accounts
for lack of fit, the successive log-ratios and a signed two-term fit ``e = a h^p + b h^{p+1}``.
Richardson extrapolation lives in :mod:`smetool.extrapolation` and is re-exported here.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, §9.7 (batch estimates of
weak errors) and §15.3 (extrapolation). D. Talay, L. Tubaro, Stoch. Anal. Appl. 8 (1990) 483–509.
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I", JMLR 20 (2019) — weak approximation of order α in the learning rate.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .extrapolation import Extrapolation, richardson, richardson_monte_carlo, richardson_weights
from .montecarlo import (
    _check_times,
    _generator,
    check_antithetic_producer,
    check_path_count,
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

__all__ = [
    "ExactReference",
    "WeakErrorTable",
    "weak_error",
    "OrderFit",
    "TwoTermFit",
    "FlaggedPoint",
    "WeakOrderWarning",
    "fit_order",
    "Extrapolation",
    "richardson",
    "richardson_weights",
    "richardson_monte_carlo",
]


class WeakOrderWarning(UserWarning):
    """An order estimate whose input needs attention (unresolved points, a sign change)."""


class ExactReference:
    """Exact expectations ``E g(X_t)`` used as the reference of :func:`weak_error` (zero SE).

    Parameters
    ----------
    expectations : mapping or callable
        ``{name: value}`` with a scalar (the same at every save time) or one value per save time,
        or a callable ``step -> {name: value}`` when the reference depends on the step (e.g. the
        exact moments of the discrete scheme).

    Examples
    --------
    >>> import math
    >>> ref = ExactReference({"x": [1.0, math.exp(-1.0)]})   # E X_t of dX = -X dt at t = 0, 1
    """

    def __init__(self, expectations: Mapping[str, Any] | Callable[[float], Mapping[str, Any]]):
        if not (isinstance(expectations, Mapping) or callable(expectations)):
            raise TypeError(
                "`expectations` must be a dict {name: value(s)} or a callable step -> dict; got "
                f"{type(expectations).__name__}."
            )
        self.expectations = expectations

    def values(self, step: float, names: Sequence[str], S: int) -> Tensor:
        """The expectations at ``step`` as float64 ``(K, S)``, checked against ``names``."""
        table = self.expectations(step) if callable(self.expectations) else self.expectations
        if not isinstance(table, Mapping) or set(table) != set(names):
            got = sorted(table) if isinstance(table, Mapping) else type(table).__name__
            raise ValueError(
                f"the exact reference must give one entry per test function {sorted(names)}; got "
                f"{got}."
            )
        rows = []
        for name in names:
            v = torch.as_tensor(table[name], dtype=torch.float64).reshape(-1)
            if v.numel() == 1:
                v = v.expand(S)
            if v.numel() != S:
                raise ValueError(
                    f"the exact reference for {name!r} must be a scalar or have one value per "
                    f"save time ({S}); got {v.numel()} values."
                )
            rows.append(v)
        return torch.stack(rows)

    def __repr__(self) -> str:
        return f"ExactReference({self.expectations!r})"


@dataclass(frozen=True)
class WeakErrorTable:
    """Weak errors ``E g(approx_h) − E g(ref)`` per test function, save time and step.

    Attributes
    ----------
    names : tuple of str, (K,)
    times : tuple of float, (S,)
    steps : tuple of float, (L,)
        In the order given.
    errors, stderrs : Tensor, (K, S, L), float64
        The estimated errors and their standard errors (from the paired per-path differences).
    approx_means, approx_stderrs, reference_means, reference_stderrs : Tensor, (K, S, L)
        The two means (reference standard errors are 0 for an :class:`ExactReference`).
    count : int
        Samples per step (antithetic pairs when ``antithetic``).
    seed : int
    common_random_numbers, antithetic, exact_reference : bool
    variance_reduction : Tensor, (K, S, L)
        Variance of the error estimate that independent sampling with the same number of simulated
        paths would give, divided by the variance achieved (≈ 1 without CRN or antithetic pairs).
        Estimated from the same run.
    crn_factor, antithetic_factor : Tensor (K, S, L) or None
        The two parts of ``variance_reduction``: ``(Var g_a + Var g_r) / Var(g_a − g_r)`` per path,
        and ``Var(single difference) / (2 Var(pair-averaged difference))``.
    """

    names: tuple[str, ...]
    times: tuple[float, ...]
    steps: tuple[float, ...]
    errors: Tensor
    stderrs: Tensor
    approx_means: Tensor
    approx_stderrs: Tensor
    reference_means: Tensor
    reference_stderrs: Tensor
    count: int
    seed: int
    common_random_numbers: bool
    antithetic: bool
    exact_reference: bool
    variance_reduction: Tensor
    crn_factor: Tensor | None = None
    antithetic_factor: Tensor | None = None

    @property
    def snr(self) -> Tensor:
        """``|error| / stderr``, (K, S, L)."""
        return self.errors.abs() / self.stderrs

    def _index(self, name: str, time_index: int) -> tuple[int, int]:
        if name not in self.names:
            raise KeyError(f"no test function {name!r}; the table has {list(self.names)}.")
        if not -len(self.times) <= time_index < len(self.times):
            S = len(self.times)
            raise IndexError(f"`time_index` must be in [-{S}, {S}); got {time_index}.")
        return self.names.index(name), time_index

    def series(self, name: str, time_index: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, errors, stderrs)`` of one test function at one save time, as numpy arrays."""
        k, s = self._index(name, time_index)
        return (np.asarray(self.steps), self.errors[k, s].numpy().copy(),
                self.stderrs[k, s].numpy().copy())

    def fit(self, name: str, time_index: int = -1, **kwargs: Any) -> "OrderFit":
        """:func:`fit_order` on one test function at one save time (default the last)."""
        return fit_order(*self.series(name, time_index), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (NaN → None); tensors become lists indexed ``[name][time][step]``."""
        return json_safe(dict(self.__dict__))

    def __repr__(self) -> str:
        mode = ", ".join(m for m, on in (("CRN", self.common_random_numbers),
                                          ("antithetic", self.antithetic),
                                          ("exact reference", self.exact_reference)) if on)
        lines = [f"WeakErrorTable(count={self.count}, seed={self.seed}{', ' + mode if mode else ''})"]
        for k, name in enumerate(self.names):
            for s, t in enumerate(self.times):
                lines.append(f"  {name} @ t={t:g}:")
                for j, h in enumerate(self.steps):
                    lines.append(
                        f"    h={h:<10.4g} error={self.errors[k, s, j]:+.4e} ± "
                        f"{self.stderrs[k, s, j]:.2e} (|e|/SE={self.snr[k, s, j]:.1f}, "
                        f"VR={self.variance_reduction[k, s, j]:.3g})"
                    )
        return "\n".join(lines)


def _producer_at(factory: Any, step: float, name: str) -> Callable:
    if isinstance(factory, Mapping):
        if step not in factory:
            raise KeyError(f"`{name}` has no producer for step {step:g}; it has steps {sorted(factory)}.")
        producer = factory[step]
    else:
        producer = factory(step)
    if not callable(producer):
        raise TypeError(
            f"`{name}` must give a path producer (n_paths, generator) -> (S, P, D) for each step; "
            f"for step {step:g} it gave {type(producer).__name__}."
        )
    return producer


def _check_steps(steps: Any) -> tuple[float, ...]:
    try:
        values = tuple(float(h) for h in steps)
    except TypeError:
        raise ValueError(f"`steps` must be a sequence of positive step sizes; got {steps!r}.") from None
    if not values:
        raise ValueError("`steps` must hold at least one step size; got an empty sequence.")
    bad = [h for h in values if not (math.isfinite(h) and h > 0)]
    if bad:
        raise ValueError(f"`steps` must be positive and finite; got {bad[0]!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"`steps` must be distinct; got {list(values)}.")
    return values


def weak_error(
    reference: ExactReference | Callable[[float], Callable] | Mapping[float, Callable],
    approximation: Callable[[float], Callable] | Mapping[float, Callable],
    test_functions: Mapping[str, Callable[[Tensor], Tensor]],
    n_paths: int,
    *,
    seed: int,
    steps: Sequence[float],
    common_random_numbers: bool = False,
    antithetic: bool = False,
    chunk_size: int | None = None,
    memory_budget: int = 2**28,
    device: str | torch.device | None = None,
    times: Sequence[float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    tag: str = "",
    progress: bool = True,
) -> WeakErrorTable:
    """Estimate the weak errors ``E g(approx_h(t)) − E g(ref(t))`` for several steps ``h``.

    For each step the approximation (and a sampled reference) are run on ``n_paths`` paths in
    chunks; per path the difference ``g(approx) − g(ref)`` is formed and its mean and standard
    error accumulated (:func:`smetool.run_monte_carlo`'s machinery: float64 streaming moments,
    deterministic per-chunk seeds, checkpoints). Every step uses its own independent random
    stream, so the errors at different steps are independent, as :func:`fit_order` assumes.

    Parameters
    ----------
    reference : ExactReference, or callable / mapping step -> path producer
        Exact expectations (zero standard error), or a producer of reference paths per step (the
        step may be ignored, e.g. for exact sampling of the SDE).
    approximation : callable or mapping step -> path producer
        The scheme (or training algorithm) at step ``h``; producers return ``(S, P, D)``.
    test_functions : dict of str to callable
        ``g``: states ``(N, D)`` to values ``(N,)``, row by row.
    n_paths : int
        Samples per step (antithetic pairs when ``antithetic``).
    seed : int
    steps : sequence of float
        Step sizes or learning rates, positive and distinct.
    common_random_numbers : bool
        Give both producers generators in the same state in every chunk. The estimate is unbiased
        either way; it has a smaller variance only when the producers turn the same draws into
        coupled paths (e.g. a scheme and the exact solution built from the same Brownian
        increments). Needs a sampled reference.
    antithetic : bool
        Run every chunk a second time with ``antithetic=True`` (generators in the same state; see
        :class:`smetool.AntitheticPathProducer`) and average each pair.
    chunk_size, memory_budget, device, times, checkpoint_every, tag, progress
        As for :func:`smetool.run_monte_carlo` (``times`` label the ``S`` save times).
    checkpoint : path, optional
        A directory; one checkpoint file per step (``weak_error_step{i}.pt``).

    Returns
    -------
    WeakErrorTable

    Raises
    ------
    ValueError
        Empty, non-positive or repeated steps; CRN with an exact reference; inconsistent numbers
        of save times; an exact reference without an entry per test function.
    TypeError
        A reference or approximation that is not a producer factory; ``antithetic=True`` with a
        producer that lacks the keyword.

    Examples
    --------
    >>> import math, torch
    >>> from smetool.weak import ExactReference, weak_error
    >>> def em(h):  # Euler–Maruyama for dX = -X dt + 0.2 X dW on [0, 1]
    ...     def producer(n, gen):
    ...         x = torch.ones(n, 1, dtype=torch.float64)
    ...         for _ in range(round(1 / h)):
    ...             x = x - x * h + 0.2 * x * math.sqrt(h) * torch.randn(n, 1, generator=gen, dtype=x.dtype)
    ...         return x.unsqueeze(0)
    ...     return producer
    >>> ref = ExactReference({"x": math.exp(-1.0)})
    >>> table = weak_error(ref, em, {"x": lambda x: x[:, 0]}, 20_000, seed=0,
    ...                    steps=[0.25, 0.125], progress=False)
    >>> bool((table.errors < 0).all())
    True
    """
    hs = _check_steps(steps)
    tests = check_test_functions(test_functions)
    names = list(tests)
    n_paths = check_path_count(n_paths)
    seed = check_seed(seed)
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    dev = torch.device("cpu" if device is None else device)
    exact = isinstance(reference, ExactReference)
    if not exact and not (callable(reference) or isinstance(reference, Mapping)):
        raise TypeError(
            "`reference` must be an ExactReference or a callable/mapping step -> path producer; "
            f"got {type(reference).__name__}."
        )
    if not (callable(approximation) or isinstance(approximation, Mapping)):
        raise TypeError(
            "`approximation` must be a callable or mapping step -> path producer; got "
            f"{type(approximation).__name__}."
        )
    if exact and common_random_numbers:
        raise ValueError(
            "common_random_numbers=True needs a sampled reference (a producer per step); an "
            "ExactReference has no randomness to share. Use common_random_numbers=False."
        )
    ckpt_dir = None if checkpoint is None else Path(checkpoint)
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    n_saves: dict[str, int] = {}
    per_step = []
    for i, h in enumerate(hs):
        approx = _producer_at(approximation, h, "approximation")
        ref = None if exact else _producer_at(reference, h, "reference")
        if antithetic:
            check_antithetic_producer(approx, "approximation")
            if ref is not None:
                check_antithetic_producer(ref, "reference")
        flag = False if antithetic else None

        def values(prod: Callable, name: str, s: int, anti: bool | None, n: int) -> Tensor:
            xs = produce(prod, n, _generator(dev, s), anti, name)
            if n_saves.setdefault("S", xs.shape[0]) != xs.shape[0]:
                raise ValueError(
                    f"`{name}` returned {xs.shape[0]} save times at step {h:g}; earlier producers "
                    f"returned {n_saves['S']}. Both must save at the same times for every step."
                )
            return evaluate_test_functions(tests, xs)

        def side(n: int, c: int, anti: bool | None, approx=approx, ref=ref, h=h, i=i) -> Tensor:
            s_a = chunk_seed(seed, i, c, 0)
            s_r = s_a if common_random_numbers else chunk_seed(seed, i, c, 1)
            a = values(approx, "approximation", s_a, anti, n)
            if ref is None:
                r = reference.values(h, names, a.shape[1]).to(a.device)[..., None].expand_as(a)
            else:
                r = values(ref, "reference", s_r, anti, n)
            return torch.stack([a, r, a - r])  # (3, K, S, n)

        def evaluate(n: int, c: int, side=side) -> dict[str, Tensor]:
            if not antithetic:
                return {"main": side(n, c, None)}
            plus, minus = side(n, c, False), side(n, c, True)
            return {"main": 0.5 * (plus + minus), "single": torch.cat([plus, minus], dim=-1)}

        def probe(approx=approx, flag=flag) -> int:
            xs = produce(approx, 2, _generator(dev, chunk_seed(seed, i, 2**31 - 1)), flag,
                         "approximation")
            calls = (2 if antithetic else 1) * (1 if exact else 2)
            return calls * xs[:, 0].numel() * xs.element_size() + 3 * 8 * len(names) * xs.shape[0] * 2

        chunk = resolve_chunk_size(chunk_size, memory_budget, n_paths, probe)
        fingerprint = {
            "kind": "weak_error", "seed": seed, "n_paths": n_paths, "chunk_size": chunk,
            "names": names, "tag": str(tag), "step": h, "step_index": i,
            "common_random_numbers": bool(common_random_numbers), "antithetic": bool(antithetic),
            "exact_reference": exact, "device": dev.type,
        }
        path = None if ckpt_dir is None else ckpt_dir / f"weak_error_step{i}.pt"
        acc = run_chunks(evaluate, n_paths, chunk, fingerprint=fingerprint, checkpoint=path,
                         checkpoint_every=checkpoint_every, progress=progress,
                         desc=f"weak error h={h:g}", paths_per_sample=2 if antithetic else 1)
        per_step.append(_step_summary(acc, antithetic, exact, reference, h, names))

    def stacked(key: str) -> Tensor | None:
        if per_step[0][key] is None:
            return None
        return torch.stack([d[key] for d in per_step], dim=-1)

    return WeakErrorTable(
        names=tuple(names), times=_check_times(times, per_step[0]["error"].shape[-1]), steps=hs,
        errors=stacked("error"), stderrs=stacked("stderr"),
        approx_means=stacked("approx_mean"), approx_stderrs=stacked("approx_stderr"),
        reference_means=stacked("ref_mean"), reference_stderrs=stacked("ref_stderr"),
        count=per_step[0]["count"], seed=seed, common_random_numbers=bool(common_random_numbers),
        antithetic=bool(antithetic), exact_reference=exact,
        variance_reduction=stacked("reduction"), crn_factor=stacked("crn"),
        antithetic_factor=stacked("anti"),
    )


def _step_summary(acc: Mapping, antithetic: bool, exact: bool, reference: Any, h: float,
                  names: list[str]) -> dict[str, Any]:
    main = acc["main"]
    single = acc["single"] if antithetic else main
    mean, se = main.mean, main.stderr
    v_single = single.variance
    # Independent sampling of both sides with the same number of simulated paths would give the
    # difference a per-sample variance Var g_a + Var g_r (just Var g_a for an exact reference).
    v_indep = v_single[0] + (0.0 if exact else v_single[1])
    paths_per_sample = 2 if antithetic else 1
    ref_mean = reference.values(h, names, mean.shape[-1]) if exact else mean[1]
    return {
        "error": mean[2], "stderr": se[2], "approx_mean": mean[0], "approx_stderr": se[0],
        "ref_mean": ref_mean, "ref_stderr": torch.zeros_like(se[1]) if exact else se[1],
        "count": main.count,
        "reduction": v_indep / (paths_per_sample * main.variance[2]),
        "crn": None if exact else v_indep / v_single[2],
        "anti": v_single[2] / (2.0 * main.variance[2]) if antithetic else None,
    }


# ---------------------------------------------------------------------------------------------
# Order fitting


@dataclass(frozen=True)
class FlaggedPoint:
    """A step left out of the log–log fit, and why."""

    index: int
    step: float
    error: float
    stderr: float
    snr: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dict(self.__dict__))


@dataclass(frozen=True)
class TwoTermFit:
    """Signed fit ``e(h) = a h^p + b h^{p+1}`` (weights ``1/SE²``) with intervals on ``a``, ``b``."""

    order: float
    a: float
    a_stderr: float
    a_ci: tuple[float, float]
    b: float
    b_stderr: float
    b_ci: tuple[float, float]
    reduced_chi2: float
    dof: int

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dict(self.__dict__))


@dataclass(frozen=True)
class OrderFit:
    """An estimated weak order: ``|e(h)| ≈ C h^slope`` with a confidence interval.

    Attributes
    ----------
    slope, slope_stderr : float
        WLS slope of ``log|e|`` on ``log h`` and its standard error (inflated for lack of fit).
    ci : (float, float)
        ``slope ± q · slope_stderr`` with the Student-t quantile (``dof`` degrees of freedom;
        normal quantile when ``dof = 0``). NaN when it cannot be estimated (two exact points).
    intercept, intercept_stderr : float
        ``log C``.
    confidence, min_snr : float
    dof : int
        Used points minus 2.
    reduced_chi2 : float
        ``Σ w r² / dof`` (NaN when ``dof = 0``); the covariance is multiplied by
        ``inflation = max(1, reduced_chi2)``.
    inflation : float
    used : tuple of bool, (L,)
        In the input order; the unused points are in ``flagged``.
    flagged : tuple of FlaggedPoint
    ratio_steps, ratios, ratio_stderrs : tuples
        Successive ``log(e_i/e_{i+1}) / log(h_i/h_{i+1})`` over the used points from the largest
        step down, with delta-method standard errors.
    sign_change : bool
        The used (resolved) errors do not all have the same sign.
    two_term : TwoTermFit or None
        Signed fit over all points (None when fewer than two).
    steps, errors, stderrs : tuples, (L,)
        The input.
    """

    slope: float
    slope_stderr: float
    ci: tuple[float, float]
    intercept: float
    intercept_stderr: float
    confidence: float
    min_snr: float
    dof: int
    reduced_chi2: float
    inflation: float
    used: tuple[bool, ...]
    flagged: tuple[FlaggedPoint, ...]
    ratio_steps: tuple[tuple[float, float], ...]
    ratios: tuple[float, ...]
    ratio_stderrs: tuple[float, ...]
    sign_change: bool
    two_term: TwoTermFit | None
    steps: tuple[float, ...]
    errors: tuple[float, ...]
    stderrs: tuple[float, ...]

    @property
    def constant(self) -> float:
        """``C = exp(intercept)`` in ``|e| ≈ C h^slope``."""
        return math.exp(self.intercept)

    def contains(self, order: float) -> bool:
        """Whether ``order`` lies in the confidence interval."""
        return bool(self.ci[0] <= order <= self.ci[1])

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["flagged"] = [p.to_dict() for p in self.flagged]
        out["two_term"] = None if self.two_term is None else self.two_term.to_dict()
        return json_safe(out)

    def __repr__(self) -> str:
        pct = f"{100 * self.confidence:g}%"
        lines = [
            f"OrderFit(slope={self.slope:.4f}, {pct} CI=[{self.ci[0]:.4f}, {self.ci[1]:.4f}], "
            f"used {sum(self.used)}/{len(self.used)} steps, reduced χ²={self.reduced_chi2:.3g})"
        ]
        if self.ratios:
            pairs = ", ".join(f"{r:.3f}±{s:.2g}" for r, s in zip(self.ratios, self.ratio_stderrs))
            lines.append(f"  successive ratios (large → small h): {pairs}")
        if self.two_term is not None:
            t = self.two_term
            lines.append(
                f"  two-term e = a h^{t.order:g} + b h^{t.order + 1:g}: a={t.a:.4g} "
                f"[{t.a_ci[0]:.4g}, {t.a_ci[1]:.4g}], b={t.b:.4g}"
            )
        for p in self.flagged:
            lines.append(f"  excluded h={p.step:g}: {p.reason}")
        if self.sign_change:
            lines.append("  WARNING: the resolved errors change sign; the log-log slope is not meaningful")
        return "\n".join(lines)


def _as_1d(values: Any, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional (one entry per step); got shape {arr.shape}.")
    return arr


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray | None, confidence: float
         ) -> tuple[np.ndarray, np.ndarray, float, float, int, float]:
    """Weighted least squares with a lack-of-fit-inflated covariance.

    Returns (coefficients, standard errors, reduced chi², inflation, dof, quantile). With known
    weights (``w``), the covariance ``(XᵀWX)⁻¹`` is multiplied by ``max(1, χ²/dof)``; without
    (exact data), by the residual variance. The quantile is Student-t with ``dof`` degrees of
    freedom, or normal when ``dof = 0`` and the weights are known.
    """
    from scipy import stats

    n, k = X.shape
    sw = np.ones(n) if w is None else np.sqrt(w)
    scale = np.abs(X).max(axis=0)  # column scaling keeps h^p, h^{p+1} designs well conditioned
    A = (X / scale) * sw[:, None]
    coef_s, *_ = np.linalg.lstsq(A, y * sw, rcond=None)
    cov_s = np.linalg.inv(A.T @ A)
    coef = coef_s / scale
    cov = cov_s / np.outer(scale, scale)
    resid = (y - X @ coef) * sw
    dof = n - k
    rchi2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    if w is None:
        inflation = rchi2
    else:
        inflation = max(1.0, rchi2) if dof > 0 else 1.0
    se = np.sqrt(np.diag(cov) * inflation)
    if dof > 0:
        q = float(stats.t.ppf(0.5 + confidence / 2, dof))
    else:
        q = float(stats.norm.ppf(0.5 + confidence / 2)) if w is not None else float("nan")
    return coef, se, rchi2, inflation, dof, q


def fit_order(
    steps: Sequence[float] | np.ndarray | Tensor,
    errors: Sequence[float] | np.ndarray | Tensor,
    stderrs: Sequence[float] | np.ndarray | Tensor | None = None,
    *,
    min_snr: float = 3.0,
    confidence: float = 0.95,
    order: float | None = None,
) -> OrderFit:
    """Estimate a weak order from errors at several steps, with a confidence interval.

    Weighted least squares of ``log|e_i|`` on ``log h_i`` with weights ``(e_i/SE_i)²`` (the
    delta method: ``Var log|ê| ≈ (SE/e)²``). The covariance is inflated by the reduced χ² when it
    exceeds 1 (lack of fit: pre-asymptotic curvature the model ``C h^p`` does not have), and the
    interval uses the Student-t quantile with ``n − 2`` degrees of freedom. Points with
    ``|e| < min_snr · SE`` (or ``e = 0``) carry no usable slope information; they are excluded,
    listed in :attr:`OrderFit.flagged` and warned about — never dropped silently. Also reported:
    successive log-ratios, a sign-change warning (a log-fit across a sign change measures the
    cancellation, not the order) and the signed two-term fit ``e = a h^p + b h^{p+1}`` over all
    points, whose ``a`` is the leading error constant.

    Parameters
    ----------
    steps : array-like, (L,)
        Positive, distinct step sizes (or learning rates).
    errors : array-like, (L,)
        Signed errors.
    stderrs : array-like, (L,), optional
        Their standard errors: all positive, or all zero / omitted for exact errors (then the fit
        is unweighted and the interval comes from the residuals alone).
    min_snr : float
        Minimal ``|e|/SE`` of a used point (default 3; the numerics notes recommend 5 for a
        strict test).
    confidence : float
        Level of the intervals, in (0, 1).
    order : float, optional
        ``p`` of the two-term fit; default the WLS slope rounded to an integer ≥ 1.

    Returns
    -------
    OrderFit

    Raises
    ------
    ValueError
        Shape mismatch, non-positive or repeated steps, non-finite values, negative or mixed
        zero/positive standard errors, fewer than two usable points, bad ``min_snr``,
        ``confidence`` or ``order``.

    Warns
    -----
    WeakOrderWarning
        When points are excluded or the resolved errors change sign.

    Examples
    --------
    >>> fit = fit_order([0.1, 0.05, 0.025], [2e-2, 1e-2, 5e-3], [1e-4, 1e-4, 1e-4])
    >>> round(fit.slope, 6), fit.contains(1.0)
    (1.0, True)
    """
    h = _as_1d(steps, "steps")
    e = _as_1d(errors, "errors")
    se = np.zeros_like(e) if stderrs is None else _as_1d(stderrs, "stderrs")
    if not (len(e) == len(h) == len(se)):
        raise ValueError(
            f"`steps`, `errors` and `stderrs` must have the same length; got {len(h)}, {len(e)}, "
            f"{len(se)}."
        )
    if not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"`steps` must be positive and finite; got {h.tolist()}.")
    if len(np.unique(h)) != len(h):
        raise ValueError(f"`steps` must be distinct; got {h.tolist()}.")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"`errors` must be finite; got {e.tolist()}.")
    if not np.all(np.isfinite(se)) or np.any(se < 0):
        raise ValueError(f"`stderrs` must be finite and non-negative; got {se.tolist()}.")
    exact = bool(np.all(se == 0))
    if not exact and np.any(se == 0):
        raise ValueError(
            "`stderrs` must be all positive (Monte-Carlo errors) or all zero (exact errors); got "
            f"{se.tolist()}."
        )
    if not (isinstance(min_snr, (int, float)) and math.isfinite(min_snr) and min_snr >= 0):
        raise ValueError(f"`min_snr` must be a finite number ≥ 0; got {min_snr!r}.")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    if order is not None and not (isinstance(order, (int, float)) and math.isfinite(order) and order > 0):
        raise ValueError(f"`order` must be a positive number; got {order!r}.")

    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(se > 0, np.abs(e) / np.where(se > 0, se, 1.0), np.inf)
    used = (e != 0) & (snr >= min_snr)
    flagged = []
    for i in np.flatnonzero(~used):
        reason = "error is exactly 0" if e[i] == 0 else f"|e|/SE = {snr[i]:.2f} < min_snr = {min_snr:g}"
        flagged.append(FlaggedPoint(int(i), float(h[i]), float(e[i]), float(se[i]), float(snr[i]), reason))
    if used.sum() < 2:
        raise ValueError(
            f"fit_order needs at least two steps with a resolved error (|e| ≥ min_snr·SE, "
            f"min_snr={min_snr:g}); got {int(used.sum())} of {len(h)} (|e|/SE = "
            f"{np.round(snr, 2).tolist()}). Use more paths, larger steps or variance reduction."
        )
    if flagged:
        warnings.warn(
            "fit_order excluded " + "; ".join(f"h={p.step:g} ({p.reason})" for p in flagged)
            + ". They are listed in OrderFit.flagged.", WeakOrderWarning, stacklevel=2)

    hu, eu, seu = h[used], e[used], se[used]
    sign_change = bool(np.any(eu > 0) and np.any(eu < 0))
    if sign_change:
        warnings.warn(
            f"the resolved errors change sign ({eu.tolist()} at h={hu.tolist()}): the leading "
            "error constant is small or the steps are pre-asymptotic, so the log-log slope is not "
            "meaningful. Use the signed two-term fit (OrderFit.two_term), another test function "
            "or another horizon.", WeakOrderWarning, stacklevel=2)
    X = np.column_stack([np.ones(len(hu)), np.log(hu)])
    w = None if exact else (eu / seu) ** 2
    coef, coef_se, rchi2, inflation, dof, q = _wls(X, np.log(np.abs(eu)), w, confidence)
    slope, slope_se = float(coef[1]), float(coef_se[1])
    ci = (slope - q * slope_se, slope + q * slope_se)

    order_desc = np.argsort(-hu)
    hd, ed, sd = hu[order_desc], eu[order_desc], seu[order_desc]
    log_h = np.log(hd[:-1] / hd[1:])
    ratios = np.log(np.abs(ed[:-1] / ed[1:])) / log_h
    rel = np.zeros_like(ed) if exact else sd / np.abs(ed)
    ratio_se = np.sqrt(rel[:-1] ** 2 + rel[1:] ** 2) / log_h

    p = float(order) if order is not None else float(max(1, round(slope)))
    basis = np.column_stack([h**p, h ** (p + 1)])
    c2, c2_se, r2, _, dof2, q2 = _wls(basis, e, None if exact else 1.0 / se**2, confidence)
    two_term = TwoTermFit(
        order=p, a=float(c2[0]), a_stderr=float(c2_se[0]),
        a_ci=(float(c2[0] - q2 * c2_se[0]), float(c2[0] + q2 * c2_se[0])),
        b=float(c2[1]), b_stderr=float(c2_se[1]),
        b_ci=(float(c2[1] - q2 * c2_se[1]), float(c2[1] + q2 * c2_se[1])),
        reduced_chi2=r2, dof=dof2,
    )
    return OrderFit(
        slope=slope, slope_stderr=slope_se, ci=(float(ci[0]), float(ci[1])),
        intercept=float(coef[0]), intercept_stderr=float(coef_se[0]), confidence=float(confidence),
        min_snr=float(min_snr), dof=dof, reduced_chi2=rchi2, inflation=float(inflation),
        used=tuple(bool(u) for u in used), flagged=tuple(flagged),
        ratio_steps=tuple((float(a), float(b)) for a, b in zip(hd[:-1], hd[1:])),
        ratios=tuple(float(r) for r in ratios), ratio_stderrs=tuple(float(s) for s in ratio_se),
        sign_change=sign_change, two_term=two_term,
        steps=tuple(h.tolist()), errors=tuple(e.tolist()), stderrs=tuple(se.tolist()),
    )
