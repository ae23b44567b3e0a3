"""Verdicts with power: each category occurs, and a verdict that cannot fail is not a pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smetool import WeakOrderWarning, fit_order
from smetool.stats import Verdict, judge_order, neighbour_orders

H = np.array([0.04, 0.02, 0.01, 0.005])


def errors(order: float, c: float = 1.0, curvature: float = 0.0) -> np.ndarray:
    return c * H**order * (1.0 + curvature * H)


def test_neighbouring_orders():
    assert neighbour_orders(1) == (0.0, 2.0)
    assert neighbour_orders(2) == (1.0,)


def test_a_resolved_order_two_error_passes():
    e = errors(2, curvature=3.0)
    fit = fit_order(H, e, e / 50)  # every point at 50 SE
    v = judge_order(fit, 2)
    assert v.verdict is Verdict.PASS and v.passed and not v.reasons
    assert fit.corrected is not None and fit.corrected.ci[0] < 2 < fit.corrected.ci[1]


def test_the_order_one_error_of_a_wrong_sme_fails_an_order_two_check():
    e = errors(1)
    v = judge_order(fit_order(H, e, e / 50), 2)
    assert v.verdict is Verdict.FAIL and v.failed and "excludes 2" in v.reasons[0]


def test_an_interval_that_contains_a_neighbour_is_inconclusive():
    e = errors(2)
    wide = fit_order(H, e, e / 2.5, min_snr=2)  # 2.5 SE: an uninformative fit
    v = judge_order(wide, 2, min_snr=2)
    assert v.verdict is Verdict.INCONCLUSIVE
    assert any("also contains 1" in r for r in v.reasons), v.reasons


def test_unresolved_points_and_sign_changes_are_inconclusive():
    e = errors(1)
    se = e / 50
    se[-1] = abs(e[-1]) / 3  # the smallest step at 3 SE
    v = judge_order(fit_order(H, e, se, min_snr=3), 1)
    assert v.verdict is Verdict.INCONCLUSIVE and "points below 5 SE at 0.005 (3.0 SE)" in v.reasons[0]
    flipped = e * np.array([1, 1, -1, -1])
    with pytest.warns(WeakOrderWarning, match="change sign"):
        fit = fit_order(H, flipped, np.abs(flipped) / 50)
    v = judge_order(fit, 1)
    assert v.verdict is Verdict.INCONCLUSIVE and "the resolved errors change sign" in v.reasons


def test_no_fit_is_inconclusive():
    v = judge_order(None, 1, why_unfitted="fewer than two resolved points")
    assert v.verdict is Verdict.INCONCLUSIVE and "fewer than two" in str(v)
    assert v.to_dict()["verdict"] == "inconclusive"


def test_pre_asymptotic_curvature_is_not_mistaken_for_a_wrong_order():
    """A true order-1 error with a 10 % next term, resolved at 200 SE: the straight log–log slope
    excludes 1, the fit with the next term does not."""
    e = errors(1, curvature=2.5)
    fit = fit_order(H, e, e / 200)
    assert not fit.contains(1.0)  # the straight slope is biased by the curvature
    assert judge_order(fit, 1).passed


@pytest.mark.parametrize("order", [1, 2])
def test_verdicts_on_the_exact_sgd_weak_errors(order):
    """No Monte Carlo: the exact weak errors of the SGD least-squares SMEs (orders 1 and 2) pass
    as their own order, and the order-1 SME fails as an order-2 SME."""
    from smetool import SGDLeastSquares

    model = SGDLeastSquares.default().exact_moments()
    lrs = [2.0**-k for k in range(5, 9)]
    errs = model.weak_errors(SGDLeastSquares.default().x0.numpy(), lrs, 1.0,
                             orders=[1, 2]).series("f", order)
    fit = fit_order(lrs, errs, None)
    assert judge_order(fit, order).passed
    if order == 1:
        assert judge_order(fit, 2).failed
    assert math.isfinite(fit.slope)
