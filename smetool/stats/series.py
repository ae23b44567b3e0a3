"""The verdict on a weak order as a statistical test on the weak-error series in the step.

A weak error of order ``p`` is a series in the step (the learning rate) ``h``::

    e(h) = c_p h^p + c_{p+1} h^{p+1} + …

:func:`judge_series` fits this series to Monte-Carlo errors ``ê_i`` with standard errors ``s_i``
by weighted least squares (weights ``1/s_i²``), and tests the claim "order ``p``" against the
alternative that the data demand a term of order ``p − 1`` (for ``p = 1`` a constant: an
``O(1)`` error that does not vanish). The rule, exactly as implemented:

1. **The model.** For ``K = 1, 2, …, L − 2`` (``L`` steps) the *extended* series
   ``c_{p−1} h^{p−1} + c_p h^p + … + c_{p+K−1} h^{p+K−1}`` (``K + 1`` terms, ``L − K − 1 ≥ 1``
   degrees of freedom) is fitted. It is *acceptable* when its ``χ² = Σ r_i²/s_i²`` has
   ``P(χ²_{L−K−1} ≥ χ²) ≥ fit_level`` (default ``α``, the level of the test). The lower term is
   in every model, so a wrong SME's small ``O(h^{p−1})`` term is not absorbed by higher terms
   before it is tested.
2. **Truncation.** A series cut after ``K`` terms biases ``ĉ_{p−1}`` by ``β_K c_{p+K}``, where
   ``β_K`` is the ``h^{p−1}`` coefficient of the weighted least-squares fit of ``h^{p+K}`` by the
   model (over a factor of five in ``h`` the powers are nearly collinear, so an omitted term
   too small for the χ² test can still move ``ĉ_{p−1}`` by several standard errors). The next
   coefficient is estimated in the model with ``h^{p+K}`` added, and
   ``τ² = ĉ_{p+K}² + SE(ĉ_{p+K})²`` (an upper estimate of ``c_{p+K}²``) enters the variance:
   ``V_K = SE(ĉ_{p−1})² + β_K² τ²`` (``SE`` from ``(XᵀWX)⁻¹`` multiplied by ``max(1, χ²/dof)``).
3. **The choice.** Among the acceptable models, the one with the smallest ``V_K`` (the best
   trade-off between truncation and noise), its quantile the normal ``z_{1−α/2}``: the standard
   errors are measured, and calibrated by the test suite's calibration runs. When none is
   acceptable, the one with the narrowest interval, its quantile Student-t on its degrees of
   freedom (a lack of fit widens the interval, never narrows it).
4. **Fail** when ``|ĉ_{p−1}| / √V_K`` exceeds that quantile (``α`` is the false-failure
   probability of this test function; :func:`smetool.verify` splits its ``false_failure`` over
   the test functions, Bonferroni); also when an extended series is acceptable but no *reduced*
   one (from ``h^p``, ``K = 1 … L − 1`` terms) is, at level ``α``; and when no extended series
   is acceptable but one from a lower power ``h^q`` (``q < p − 1``, chosen as above) is and
   its ``c_q`` is beyond ``z_{1−α/2}`` (an ``O(1)`` error under an order-2 claim).
5. **Pass** when not failed, the chosen extended series is acceptable, and the reduced series
   chosen the same way (smallest truncation-aware standard error of ``ĉ_p``) is acceptable and
   resolves its leading coefficient: ``|ĉ_p| / √V ≥ z_{1−α/2}``.
6. **Inconclusive** otherwise, with the reason (no acceptable series: the errors are not a
   smooth series at their standard errors, and more learning rates are needed; or ``c_p`` not
   resolved).

Sign changes of the errors are ordinary data of the series (no special case). The log–log
slope (:func:`~smetool.fit_order`) stays a picture in the reports, not the judge: over a factor
of five in ``h`` it cannot see a small ``c_{p−1}`` under a large ``c_p`` (a noise covariance off
by 10 % in the order-2 dropout SME adds an ``O(h)`` term about 1/20 of the ``O(h²)`` one at
``h = 0.05``; the slope reads 1.75).

The **detection limit** of a check in terms of a quantity ``q`` of the SME (its noise
covariance, its drift correction) follows from the sensitivity ``∂c_{p−1}/∂δ`` of the lower
coefficient to a relative change ``δ`` of ``q``: the smallest ``δ`` the test fails (at
probability one half) is ``z_{1−α/2} · SE(ĉ_{p−1}) / |∂c_{p−1}/∂δ|`` (:func:`detection_limit`).

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019) — the weak error as a series in the
learning rate. D. Talay, L. Tubaro, Stoch. Anal. Appl. 8(4) (1990) — the expansion of a scheme's
weak error in its step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from torch import Tensor

from ..jsonutil import json_safe
from .verdict import Verdict

__all__ = ["SeriesFit", "SeriesVerdict", "fit_series", "judge_series", "detection_limit",
           "FIT_LEVEL"]

FIT_LEVEL = 0.01
"""The default goodness-of-fit level of :meth:`SeriesFit.fits`."""


@dataclass(frozen=True)
class SeriesFit:
    """A weighted least-squares fit ``e(h) = Σ_j c_j h^{q_j}`` to errors with standard errors.

    Attributes
    ----------
    powers : tuple of float
        ``q_j``, ascending.
    coefficients, stderrs : tuple of float
        ``ĉ_j`` and their standard errors (the covariance inflated by ``inflation``).
    chi2 : float
        ``Σ r_i² / s_i²``.
    dof : int
        Steps minus terms.
    p_value : float
        ``P(χ²_dof ≥ chi2)`` (NaN without degrees of freedom).
    inflation : float
        ``max(1, chi2/dof)``, applied to the covariance.
    """

    powers: tuple[float, ...]
    coefficients: tuple[float, ...]
    stderrs: tuple[float, ...]
    chi2: float
    dof: int
    p_value: float
    inflation: float

    def coefficient(self, power: float) -> tuple[float, float]:
        """``(ĉ, SE)`` of the term ``h^power``."""
        j = self.powers.index(float(power))
        return self.coefficients[j], self.stderrs[j]

    def fits(self, level: float = FIT_LEVEL) -> bool:
        """Whether the χ² is acceptable at ``level``."""
        return self.dof > 0 and self.p_value >= level

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dict(self.__dict__))


def _columns(h: np.ndarray, powers: Sequence[float]) -> np.ndarray:
    return np.column_stack([h ** float(q) for q in powers])


def fit_series(steps: Any, errors: Any, stderrs: Any, powers: Sequence[float]) -> SeriesFit:
    """Fit ``e(h) = Σ_j c_j h^{q_j}`` by weighted least squares (weights ``1/s_i²``).

    Parameters
    ----------
    steps, errors, stderrs : array-like, (L,)
        Positive distinct steps, errors, positive standard errors.
    powers : sequence of float
        The powers ``q_j`` (at most ``L``).

    Returns
    -------
    SeriesFit

    Raises
    ------
    ValueError
        Mismatched lengths, non-positive steps or standard errors, non-finite values, or more
        powers than steps.
    """
    h, e, s = _checked(steps, errors, stderrs)
    q = tuple(sorted(float(p) for p in powers))
    if not q or len(q) > len(h):
        raise ValueError(f"`powers` must hold 1 … {len(h)} powers (one per step at most); got "
                         f"{list(q)}.")
    X = _columns(h, q)
    scale = np.abs(X).max(axis=0)  # column scaling keeps h^1 … h^5 designs well conditioned
    A = X / scale / s[:, None]
    coef_s, *_ = np.linalg.lstsq(A, e / s, rcond=None)
    cov_s = np.linalg.pinv(A.T @ A)
    coef = coef_s / scale
    resid = e / s - A @ coef_s
    chi2 = float(resid @ resid)
    dof = len(h) - len(q)
    p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 else math.nan
    inflation = max(1.0, chi2 / dof) if dof > 0 else 1.0
    se = np.sqrt(np.diag(cov_s) * inflation) / scale
    return SeriesFit(q, tuple(float(c) for c in coef), tuple(float(x) for x in se), chi2, dof,
                     p_value, float(inflation))


def _checked(steps: Any, errors: Any, stderrs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def arr(values: Any, name: str) -> np.ndarray:
        if isinstance(values, Tensor):
            values = values.detach().cpu().numpy()
        a = np.asarray(values, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"`{name}` must be one-dimensional (one entry per step); got shape "
                             f"{a.shape}.")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` must be finite; got {a.tolist()}.")
        return a

    h, e, s = arr(steps, "steps"), arr(errors, "errors"), arr(stderrs, "stderrs")
    if not len(h) == len(e) == len(s):
        raise ValueError(f"`steps`, `errors` and `stderrs` must have the same length; got "
                         f"{len(h)}, {len(e)}, {len(s)}.")
    if np.any(h <= 0) or len(np.unique(h)) != len(h):
        raise ValueError(f"`steps` must be positive and distinct; got {h.tolist()}.")
    if np.any(s <= 0):
        raise ValueError(f"`stderrs` must be positive (Monte-Carlo errors); got {s.tolist()}.")
    return h, e, s


@dataclass(frozen=True)
class SeriesVerdict:
    """The verdict of the series test of a weak order (rule: the module docstring).

    Attributes
    ----------
    verdict : Verdict
    order : float
        The claimed order ``p``.
    alpha : float
        The false-failure probability of this test; ``z = z_{1−α/2}``.
    z : float
    terms : int or None
        ``K``, the terms from ``h^p`` in the chosen extended model (``None``: no series fits).
    extended, reduced : SeriesFit or None
        The chosen model with the lower term ``h^{p−1}``, and the chosen one without it.
    lower, lower_stderr : float
        ``ĉ_{p−1}`` in the extended model and its standard error with the truncation allowance
        ``√V_K`` (NaN without a model).
    leading, leading_stderr : float
        ``ĉ_p`` in the reduced model and its standard error with the truncation allowance.
    reasons : tuple of str
        Why the verdict is not a pass.
    lower_quantile : float
        The quantile ``|t|`` was compared with: ``z`` when the extended series fits, else
        Student-t on its degrees of freedom (its standard error inflated for the lack of fit).
    fit_level : float
        The goodness-of-fit level the series were held to.
    spacing : float
        Of the powers of the series (1 for weak errors).
    """

    verdict: Verdict
    order: float
    alpha: float
    z: float
    terms: int | None
    extended: SeriesFit | None
    reduced: SeriesFit | None
    lower: float
    lower_stderr: float
    leading: float
    leading_stderr: float
    reasons: tuple[str, ...] = ()
    lower_quantile: float = math.nan
    fit_level: float = FIT_LEVEL
    spacing: float = 1.0

    @property
    def acceptable(self) -> bool:
        """Whether both chosen series (with and without the lower term) fit the errors: the
        verdict rests on a series description of them (a pass, a failed lower term, or a
        leading coefficient too small to resolve)."""
        return (self.extended is not None and self.reduced is not None
                and self.extended.fits(self.fit_level) and self.reduced.fits(self.fit_level))
    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAIL

    @property
    def lower_t(self) -> float:
        """``ĉ_{p−1} / SE`` (NaN without a model)."""
        return self.lower / self.lower_stderr if self.lower_stderr > 0 else math.nan

    @property
    def leading_t(self) -> float:
        """``ĉ_p / SE`` in the reduced model (NaN without a model)."""
        return self.leading / self.leading_stderr if self.leading_stderr > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("extended", "reduced")}
        out["verdict"] = self.verdict.value
        out["extended"] = None if self.extended is None else self.extended.to_dict()
        out["reduced"] = None if self.reduced is None else self.reduced.to_dict()
        out["lower_t"], out["leading_t"] = self.lower_t, self.leading_t
        return json_safe(out)

    def __str__(self) -> str:
        text = self.verdict.value
        return f"{text} ({'; '.join(self.reasons)})" if self.reasons else text


def judge_series(steps: Any, errors: Any, stderrs: Any, order: float, *, alpha: float = 0.01,
                 fit_level: float | None = None, spacing: float = 1.0) -> SeriesVerdict:
    """Judge the claim "error of order ``order``" from errors at several steps (the module's rule).

    Parameters
    ----------
    steps, errors, stderrs : array-like, (L,)
        Steps (learning rates), signed Monte-Carlo errors, their (positive) standard errors;
        independent across steps. ``L ≥ 3``.
    order : float
        ``p``: an integer ≥ 1 for a weak order; a multiple of ``spacing`` in general.
    alpha : float
        The probability that a right claim is failed by this test, in (0, 1).
    fit_level : float, optional
        The goodness-of-fit level of the series, in (0, 1); default ``alpha`` (a right series is
        then left without a model with probability about ``alpha``; the truncation allowance,
        not the χ² test, guards the tested coefficient against a series cut too short).
    spacing : float
        ``s``, the spacing of the powers: the series is ``c_{p−s} h^{p−s} + c_p h^p +
        c_{p+s} h^{p+s} + …``. 1 for weak errors (an expansion in the step); 0.5 for strong errors
        of schemes whose expansion goes in powers of ``√h`` (Euler–Maruyama's strong order ½).

    Returns
    -------
    SeriesVerdict

    Raises
    ------
    ValueError
        Bad inputs (see :func:`fit_series`), an order that is not a positive multiple of
        ``spacing``, or ``alpha``/``fit_level`` not in (0, 1).

    Examples
    --------
    >>> h = [0.05, 0.04, 0.025, 0.02, 0.0125, 0.01]
    >>> e = [0.3 * x**2 + 2 * x**3 for x in h]
    >>> v = judge_series(h, e, [1e-7] * 6, 2)
    >>> v.verdict.value, v.terms
    ('pass', 2)
    """
    h, e, s = _checked(steps, errors, stderrs)
    if not (isinstance(spacing, (int, float)) and not isinstance(spacing, bool)
            and math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"`spacing` must be a positive number; got {spacing!r}.")
    ratio = order / spacing if isinstance(order, (int, float)) and not isinstance(order, bool) \
        else math.nan
    if not (math.isfinite(ratio) and ratio >= 1 and abs(ratio - round(ratio)) < 1e-9):
        raise ValueError(f"`order` must be a positive multiple of spacing={spacing:g} (an integer "
                         f"≥ 1 for a weak order); got {order!r}.")
    for value, label in ((alpha, "alpha"), (alpha if fit_level is None else fit_level, "fit_level")):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise ValueError(f"`{label}` must be in (0, 1); got {value!r}.")
    fit_level = float(alpha) if fit_level is None else fit_level
    p, d, L = float(order), float(spacing), len(h)
    lower_power = p - d
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    nan = math.nan
    if L < 3:
        return SeriesVerdict(Verdict.INCONCLUSIVE, p, float(alpha), z, None, None, None, nan, nan,
                             nan, nan, (f"the series test needs ≥ 3 steps; got {L}",), nan,
                             fit_level, d)
    ext = _best_model(h, e, s, lower_power, d, range(2, L), fit_level, alpha)
    red = _best_model(h, e, s, p, d, range(1, L), fit_level, alpha)
    K = len(ext.fit.powers) - 1
    args = (p, float(alpha), z, K, ext.fit, red.fit, ext.coef, ext.se, red.coef, red.se)
    extra = (ext.quantile, fit_level, d)

    def term(q: float) -> str:
        return "an O(1) term" if q == 0 else f"a term of order {q:g}"

    t_lower = ext.coef / ext.se if ext.se > 0 else math.inf
    if abs(t_lower) > ext.quantile:
        how = "" if ext.acceptable else (
            f", even allowing for the series' lack of fit (χ² p-value {ext.fit.p_value:.2g}: "
            f"standard error × {math.sqrt(ext.fit.inflation):.3g}, Student-t on {ext.fit.dof} "
            f"degree(s) of freedom)")
        return SeriesVerdict(Verdict.FAIL, *args, (
            f"the errors demand {term(lower_power)}: c[h^{lower_power:g}] = {ext.coef:.3g} ± "
            f"{ext.se:.2g} ({t_lower:+.1f} SE, beyond ±{ext.quantile:.3g}){how}",), *extra)
    q = lower_power - d
    while not ext.acceptable and q > -1e-9:  # an error of lower order still: O(1), O(h), …
        lower = _best_model(h, e, s, q, d, range(2, L), fit_level, alpha)
        if lower.acceptable and abs(lower.coef) > z * lower.se:
            return SeriesVerdict(Verdict.FAIL, *args, (
                f"the errors demand {term(q)}: c[h^{q:g}] = {lower.coef:.3g} ± {lower.se:.2g} "
                f"({lower.coef / lower.se:+.1f} SE, beyond ±{z:.3g}); no series from "
                f"h^{lower_power:g} fits",), *extra)
        q -= d
    if not ext.acceptable:
        return SeriesVerdict(Verdict.INCONCLUSIVE, *args, (
            f"no series from h^{lower_power:g} with up to {L - 1} terms fits the errors at level "
            f"{fit_level:g}: the errors are not a smooth series in the step at their standard "
            "errors (more steps, or steps closer together, describe them)",), *extra)
    if not red.acceptable and not _best_model(h, e, s, p, d, range(1, L), alpha,
                                              alpha).acceptable:
        return SeriesVerdict(Verdict.FAIL, *args, (
            f"no series from h^{p:g} fits the errors even at level {alpha:.2g}, while one from "
            f"h^{lower_power:g} does",), *extra)
    if not red.acceptable:
        return SeriesVerdict(Verdict.INCONCLUSIVE, *args, (
            f"no series from h^{p:g} fits the errors at level {fit_level:.2g}",), *extra)
    t_leading = red.coef / red.se if red.se > 0 else math.inf
    if not abs(t_leading) >= z:
        return SeriesVerdict(Verdict.INCONCLUSIVE, *args, (
            f"c[h^{p:g}] = {red.coef:.3g} ± {red.se:.2g} is not resolved "
            f"({abs(t_leading):.1f} SE < {z:.2f})",), *extra)
    return SeriesVerdict(Verdict.PASS, *args, (), *extra)


@dataclass(frozen=True)
class _Model:
    fit: SeriesFit
    coef: float  # the first coefficient
    se: float  # its standard error with the truncation allowance
    quantile: float  # the normal one when the fit is acceptable, else Student-t on its dof
    acceptable: bool


def _best_model(h: np.ndarray, e: np.ndarray, s: np.ndarray, first: float, spacing: float,
                terms: range, level: float, alpha: float) -> _Model:
    """The series ``h^first, h^{first+s}, …`` (``n`` terms, ``n`` in ``terms``) used for its first
    coefficient: among those whose χ² is acceptable at ``level``, the one with the smallest
    truncation-aware standard error; when none is, the one with the narrowest interval
    ``quantile · SE``, its standard error inflated by ``√(χ²/dof)`` and referred to Student-t on
    its degrees of freedom (a lack of fit widens the interval, never narrows it)."""
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    models = []
    for n in terms:
        fit = fit_series(h, e, s, [first + k * spacing for k in range(n)])
        coef, se = _with_truncation(h, e, s, fit, first, spacing)
        ok = fit.fits(level)
        q = z if ok else float(stats.t.ppf(1.0 - alpha / 2.0, fit.dof)) if fit.dof > 0 else math.inf
        models.append(_Model(fit, coef, se, q, ok))
    good = [m for m in models if m.acceptable]
    if good:
        return min(good, key=lambda m: m.se)
    return min(models, key=lambda m: m.quantile * m.se)


def _with_truncation(h: np.ndarray, e: np.ndarray, s: np.ndarray, fit: SeriesFit,
                     power: float, spacing: float = 1.0) -> tuple[float, float]:
    """``(ĉ, √V)`` of the term ``h^power`` in ``fit``, ``V`` its variance plus the bias the next
    omitted term ``c_{q+s} h^{q+s}`` (``q`` the model's highest power) can cause: ``β² τ²`` with
    ``β`` the term's coefficient in the fit of ``h^{q+s}`` by the model and
    ``τ² = ĉ_{q+s}² + SE²`` from the model with ``h^{q+s}`` added (no allowance when that model
    has more terms than steps)."""
    coef, se = fit.coefficient(power)
    following = fit.powers[-1] + spacing
    if len(fit.powers) + 1 > len(h):
        return coef, se
    c_next, se_next = fit_series(h, e, s, (*fit.powers, following)).coefficient(following)
    beta = fit_series(h, h**following, s, fit.powers).coefficient(power)[0]
    return coef, math.sqrt(se**2 + beta**2 * (c_next**2 + se_next**2))


def detection_limit(verdict: SeriesVerdict, steps: Any, differences: Any, stderrs: Any,
                    change: float) -> float:
    """The smallest relative change of a quantity of the SME that the series test fails.

    ``differences`` are ``E g(SME) − E g(SME with the quantity scaled by 1 + change)`` at the
    steps (e.g. ``change = −1`` for the noise-free flow: the noise covariance scaled by 0). Their
    ``h^{p−1}`` coefficient, fitted with the powers of ``verdict``'s extended model, is the
    sensitivity ``Δc_{p−1}`` of the lower coefficient to that change, exact to first order
    (the ``h^{p−1}`` coefficient of a weak error is linear in the noise covariance and in the
    drift correction); the limit is ``z · SE(ĉ_{p−1}) · |change| / |Δc_{p−1}|``.

    Returns
    -------
    float
        ``inf`` when the verdict has no model or the sensitivity is not resolved
        (``|Δc_{p−1}| < z · SE(Δc_{p−1})``): this test function does not see the quantity.
    """
    if verdict.extended is None or not math.isfinite(verdict.lower_stderr * verdict.lower_quantile):
        return math.inf
    fit = fit_series(steps, differences, stderrs, verdict.extended.powers)
    sens, sens_se = fit.coefficient(verdict.order - verdict.spacing)
    if not abs(sens) > verdict.z * sens_se:
        return math.inf
    return verdict.lower_quantile * verdict.lower_stderr * abs(change) / abs(sens)
