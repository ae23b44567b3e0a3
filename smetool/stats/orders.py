"""Weak orders with confidence intervals: weighted log–log fits, successive ratios, two-term fits.

:func:`fit_order` turns errors ``e(h)`` at several steps (with standard errors, or exact) into an
order estimate: a weighted least-squares fit of ``log|e|`` on ``log h`` whose confidence interval
accounts for lack of fit, the successive log-ratios and a signed two-term fit
``e = a h^p + b h^{p+1}``. NumPy and SciPy only; nothing here runs a simulation.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, §9.7 (batch estimates of
weak errors). Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic
gradient algorithms I", JMLR 20 (2019) — weak approximation of order α in the learning rate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from torch import Tensor

from ..jsonutil import json_safe

__all__ = ["WeakOrderWarning", "FlaggedPoint", "TwoTermFit", "CorrectedOrder", "OrderFit",
           "fit_order"]


class WeakOrderWarning(UserWarning):
    """An order estimate whose input needs attention (unresolved points, a sign change)."""


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
class CorrectedOrder:
    """The order with the next error term allowed for: ``log|e| = α + p log h + c h``.

    ``e = C h^p (1 + c' h + …)`` gives ``log|e| = log C + p log h + c' h + O(h²)``: the extra
    column absorbs the pre-asymptotic curvature that biases a straight log–log slope (the trap of
    ``numerics.md``) once the errors are resolved finely enough to see it. Weighted least squares
    with weights ``(e/SE)²``; with Monte-Carlo errors (known variances) the interval uses the
    normal quantile, the covariance inflated by ``max(1, χ²/dof)`` for a lack of fit; with exact
    errors, Student-t on the residuals. Fitted when at least four points are resolved.

    Attributes
    ----------
    order, stderr : float
        ``p`` and its standard error.
    ci : (float, float)
    curvature, curvature_stderr : float
        ``c'``.
    reduced_chi2 : float
    dof : int
    """

    order: float
    stderr: float
    ci: tuple[float, float]
    curvature: float
    curvature_stderr: float
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
    corrected : CorrectedOrder or None
        The order with the next error term allowed for (four or more resolved points); the
        verdicts judge its interval when there is one (:func:`~smetool.stats.judge_order`).
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
    corrected: CorrectedOrder | None = None

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
        out["corrected"] = None if self.corrected is None else self.corrected.to_dict()
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
        if self.corrected is not None:
            c = self.corrected
            lines.append(f"  with the next term, log|e| = α + p log h + c h: p={c.order:.4f} "
                         f"[{c.ci[0]:.4f}, {c.ci[1]:.4f}], c={c.curvature:.3g}")
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


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray | None, confidence: float,
         normal: bool = False) -> tuple[np.ndarray, np.ndarray, float, float, int, float]:
    """Weighted least squares with a lack-of-fit-inflated covariance.

    Returns (coefficients, standard errors, reduced chi², inflation, dof, quantile). With known
    weights (``w``), the covariance ``(XᵀWX)⁻¹`` is multiplied by ``max(1, χ²/dof)``; without
    (exact data), by the residual variance. The quantile is Student-t with ``dof`` degrees of
    freedom, or normal when ``dof = 0`` and the weights are known (or with ``normal``: the
    measurement variances are known, the inflation covers a lack of fit).
    """
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
    if dof > 0 and not (normal and w is not None):
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
    corrected = None
    if len(hu) >= 4:
        Xc = np.column_stack([np.ones(len(hu)), np.log(hu), hu])
        cc, cc_se, crchi2, _, cdof, cq = _wls(Xc, np.log(np.abs(eu)), w, confidence, normal=True)
        if np.all(np.isfinite(cc_se)):
            corrected = CorrectedOrder(
                order=float(cc[1]), stderr=float(cc_se[1]),
                ci=(float(cc[1] - cq * cc_se[1]), float(cc[1] + cq * cc_se[1])),
                curvature=float(cc[2]), curvature_stderr=float(cc_se[2]),
                reduced_chi2=crchi2, dof=cdof)
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
        sign_change=sign_change, two_term=two_term, corrected=corrected,
        steps=tuple(h.tolist()), errors=tuple(e.tolist()), stderrs=tuple(se.tolist()),
    )
