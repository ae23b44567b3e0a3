"""Verdicts with power: an order check passes only when it could have failed.

A fitted order's confidence interval is *decisive* when it contains the claimed order ``p`` and
excludes the orders a wrong SME would show (by default ``p − 1``, and for ``p = 1`` also ``2``):
an interval such as ``[−3.2, 5.2]`` contains every order and so proves nothing. An interval is
*consistent with* an order ``q`` when ``q`` lies within it widened by :data:`ORDER_TOLERANCE`
(0.1) on both sides. The rules, applied
to an :class:`~smetool.OrderFit` of the errors at several learning rates:

* **pass** — every error is resolved (``|e| ≥ min_snr · SE``), the resolved errors keep their sign,
  and an interval is consistent with ``p`` and with no neighbouring order;
* **fail** — the resolved errors keep their sign and no interval is consistent with ``p``;
* **inconclusive** — anything else, with the reasons (an unresolved point, a sign change, an
  interval that also contains a neighbouring order, too few points for a fit).

A negative control (a wrong SME) is *rejected* when its verdict as an SME of order ``p`` is
**fail**.

Two intervals are judged: the log–log slope's and, with four or more resolved points, that of
the order with the next error term allowed for (:class:`~smetool.stats.orders.CorrectedOrder`).
A precise estimate sees the pre-asymptotic curvature, which a straight slope would mistake for a
wrong order, while the corrected order is less precise: the check passes when either interval is
decisive for ``p``, and fails only when every interval excludes ``p``. A wrong SME of another
order cannot pass this way unless an interval around its own order contains ``p`` and excludes
its own order.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .orders import OrderFit

__all__ = ["Verdict", "OrderVerdict", "judge_order", "neighbour_orders", "ORDER_TOLERANCE"]


class Verdict(enum.Enum):
    """The outcome of an order check."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def neighbour_orders(order: float) -> tuple[float, ...]:
    """The orders a check of ``order`` must exclude: ``(0, 2)`` for order 1, ``(p − 1,)`` above.

    An order-1 check must exclude 0 (an error that does not shrink: the wrong drift) and 2 (an
    error too small to measure the first-order constant); an order-``p`` check with ``p ≥ 2``
    must exclude ``p − 1`` (the SME of one order lower, or the noise-free flow).
    """
    if order <= 1:
        return (order - 1.0, order + 1.0)
    return (order - 1.0,)


@dataclass(frozen=True)
class OrderVerdict:
    """The verdict of one order check, with the reasons for it.

    Attributes
    ----------
    verdict : Verdict
    order : float
        The claimed order.
    excluded : tuple of float
        The neighbouring orders the interval had to exclude.
    ci : (float, float) or None
        The interval judged (``None`` without a fit).
    min_snr : float
        The resolution required of every point.
    reasons : tuple of str
        Why the verdict is not a pass (empty for a pass).
    """

    verdict: Verdict
    order: float
    excluded: tuple[float, ...]
    ci: tuple[float, float] | None
    min_snr: float
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAIL

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"verdict": self.verdict.value, "order": self.order, "excluded": list(self.excluded),
                "ci": None if self.ci is None else list(self.ci), "min_snr": self.min_snr,
                "reasons": list(self.reasons)}

    def __str__(self) -> str:
        text = self.verdict.value
        return f"{text} ({'; '.join(self.reasons)})" if self.reasons else text


ORDER_TOLERANCE = 0.1
"""Orders closer than this are one order: an interval is *consistent with* ``q`` when ``q`` lies
within it widened by this on both sides."""


def judge_order(fit: OrderFit | None, order: float, *, min_snr: float = 5.0,
                neighbours: Sequence[float] | None = None, why_unfitted: str = "",
                tolerance: float = ORDER_TOLERANCE) -> OrderVerdict:
    """The verdict of an order check (see the module docstring for the rules).

    Parameters
    ----------
    fit : OrderFit or None
        The fit of the errors (``None`` when too few points were resolved to fit).
    order : float
        The claimed order ``p``.
    min_snr : float
        Every point must have ``|e| ≥ min_snr · SE`` for a pass (default 5).
    neighbours : sequence of float, optional
        The orders the interval must exclude; default :func:`neighbour_orders`.
    why_unfitted : str
        The reason there is no fit, for the report.
    tolerance : float
        An interval is consistent with an order within this distance (default 0.1). Orders are
        integers, while a precise estimate also sees systematic effects of a few hundredths
        (the pre-asymptotic curvature left after the correction, a solver's own error): without
        a tolerance, a resolution of ``±0.001`` would call ``2.003 [2.001, 2.005]`` not order 2.

    Returns
    -------
    OrderVerdict
    """
    excluded = tuple(float(o) for o in (neighbour_orders(order) if neighbours is None
                                        else neighbours))
    if fit is None:
        reason = "no fit" + (f": {why_unfitted}" if why_unfitted else "")
        return OrderVerdict(Verdict.INCONCLUSIVE, float(order), excluded, None, min_snr,
                            (reason,))
    snrs = [abs(e) / s if s > 0 else math.inf for e, s in zip(fit.errors, fit.stderrs)]
    weak = [f"{h:g} ({r:.1f} SE)" for h, r in zip(fit.steps, snrs) if r < min_snr]
    intervals = [fit.ci] + ([] if fit.corrected is None else [fit.corrected.ci])
    finite = [ci for ci in intervals if math.isfinite(ci[0]) and math.isfinite(ci[1])]
    def consistent(ci: tuple[float, float], q: float) -> bool:
        return ci[0] - tolerance <= q <= ci[1] + tolerance

    contains = [ci for ci in finite if consistent(ci, order)]
    decisive = [ci for ci in contains if not any(consistent(ci, o) for o in excluded)]
    if not contains and finite and not fit.sign_change:
        lo, hi = finite[-1]
        return OrderVerdict(Verdict.FAIL, float(order), excluded, (lo, hi), min_snr,
                            (f"the interval [{lo:.3g}, {hi:.3g}] excludes {order:g}",))
    lo, hi = (decisive or contains or finite or [(math.nan, math.nan)])[0]
    reasons = []
    if not finite:
        reasons.append("the interval is not finite (too few points)")
    if weak:
        reasons.append(f"points below {min_snr:g} SE at {', '.join(weak)}")
    if fit.sign_change:
        reasons.append("the resolved errors change sign")
    if finite and not contains:
        reasons.append(f"the interval [{lo:.3g}, {hi:.3g}] excludes {order:g}")
    elif contains and not decisive:
        kept = [o for o in excluded if consistent((lo, hi), o)]
        reasons.append(f"the interval [{lo:.3g}, {hi:.3g}] also contains "
                       f"{', '.join(f'{o:g}' for o in kept)}")
    if reasons:
        return OrderVerdict(Verdict.INCONCLUSIVE, float(order), excluded, (lo, hi), min_snr,
                            tuple(reasons))
    return OrderVerdict(Verdict.PASS, float(order), excluded, (lo, hi), min_snr)
