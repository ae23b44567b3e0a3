"""The series test of a weak order: each verdict occurs, the rule is the documented one, a small
lower-order term under a large right-order one is failed, and the stated false-failure
probability holds over many simulated data sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from smetool.stats import Verdict, detection_limit, fit_series, judge_series

H = np.array([0.05, 0.04, 0.025, 0.02, 0.0125, 0.01])  # the order-2 dropout rates of 0.1.0
H7 = np.append(H, 0.005)  # with a smaller rate: the O(h) and O(h²) columns far less collinear


def series(h, coefficients: dict[int, float]) -> np.ndarray:
    return sum(c * h**q for q, c in coefficients.items())


def test_fit_series_recovers_exact_coefficients():
    e = series(H, {2: -0.35, 3: 1.2})
    fit = fit_series(H, e, np.full(6, 1e-9), [1, 2, 3])
    assert fit.coefficient(1)[0] == pytest.approx(0.0, abs=1e-9)
    assert fit.coefficient(2)[0] == pytest.approx(-0.35, rel=1e-8)
    assert fit.coefficient(3)[0] == pytest.approx(1.2, rel=1e-6)
    assert fit.dof == 3 and fit.chi2 < 1e-6 and fit.inflation == 1.0


def test_fit_series_standard_errors_are_the_weighted_least_squares_ones():
    """SE from (XᵀWX)⁻¹, independent of the data when the fit is exact (no inflation)."""
    s = np.linspace(1e-6, 3e-6, 6)
    X = np.column_stack([H, H**2]) / s[:, None]
    cov = np.linalg.inv(X.T @ X)
    fit = fit_series(H, series(H, {1: 0.01, 2: 0.3}), s, [1, 2])
    assert fit.stderrs == pytest.approx(np.sqrt(np.diag(cov)).tolist(), rel=1e-9)


def test_a_resolved_order_two_series_passes_with_the_smallest_model():
    e = series(H, {2: -0.35, 3: 1.5})
    v = judge_series(H, e, np.abs(e) / 80, 2, alpha=0.01)
    assert v.verdict is Verdict.PASS and v.passed and not v.reasons
    assert v.terms is not None and v.reduced is not None and v.reduced.powers[0] == 2.0
    assert abs(v.lower_t) < 1e-6 and abs(v.leading_t) > 20


def test_a_small_lower_order_term_under_a_large_one_is_failed():
    """A Σ off by 10 %: an O(h) term 1/20 of the O(h²) one at h = 0.05, every point at 80 SE, on
    the rates 0.05 … 0.005. The log–log slope reads about 1.8 (the old rule passed it); the
    series test fails it (t ≈ −8). Half that term still fails (t ≈ −4.7)."""
    c2 = -0.35
    for fraction, t_at_least in ((1.0, 7.0), (0.5, 4.0)):
        e = series(H7, {1: fraction * c2 * 0.05 / 20, 2: c2, 3: 1.5})
        v = judge_series(H7, e, np.abs(e) / 80, 2, alpha=0.01)
        assert v.verdict is Verdict.FAIL and v.failed, v
        assert "demand a term of order 1" in v.reasons[0] and abs(v.lower_t) > t_at_least
    slope = np.polyfit(np.log(H7), np.log(np.abs(series(H7, {1: c2 * 0.05 / 20, 2: c2}))), 1)[0]
    assert 1.7 < slope < 1.95


def test_the_same_term_on_five_times_fewer_rates_is_not_seen():
    """On 0.05 … 0.01 alone the O(h) term of a 10 % error cannot be told from the truncated
    higher terms at 80 SE: no verdict may claim it (the detection limit says so instead)."""
    c2 = -0.35
    e = series(H, {1: c2 * 0.05 / 20, 2: c2, 3: 1.5})
    assert not judge_series(H, e, np.abs(e) / 80, 2, alpha=0.01).failed


def test_an_order_one_claim_fails_on_an_error_that_does_not_vanish():
    h = np.array([0.04, 0.02, 0.01, 0.005])
    e = series(h, {0: 1e-3, 1: 0.3})
    v = judge_series(h, e, np.full(4, 1e-5), 1)
    assert v.failed and "an O(1) term" in v.reasons[0]


def test_sign_changes_are_data_of_the_series():
    """Errors that change sign (a negative O(h²) term and a positive O(h³) one) are an ordinary
    order-2 series: pass, no special case."""
    e = series(H, {2: -0.2, 3: 8.0})
    assert np.any(e > 0) and np.any(e < 0)
    v = judge_series(H, e, np.full(6, 2e-7), 2)
    assert v.passed, v


def test_an_unresolved_leading_coefficient_is_inconclusive():
    e = series(H, {2: 1e-3})
    v = judge_series(H, e, np.full(6, 1e-5), 2, alpha=0.01)
    assert v.verdict is Verdict.INCONCLUSIVE and "is not resolved" in v.reasons[0]


def test_errors_that_no_series_fits_are_inconclusive():
    """Errors that jump by far more than their standard errors are no smooth series."""
    e = np.array([1e-3, -1e-3, 1e-3, -1e-3, 1e-3, -1e-3])
    v = judge_series(H, e, np.full(6, 1e-6), 2)
    assert v.verdict is Verdict.INCONCLUSIVE and "no series" in v.reasons[0]
    assert v.to_dict()["verdict"] == "inconclusive"


def test_an_error_of_lower_order_still_fails_a_higher_claim():
    """An O(1) error under an order-2 claim: no series from h fits, one from h⁰ does."""
    e = 0.1 + 0.3 * H + 2.0 * H**2
    v = judge_series(H, e, np.full(6, 1e-6), 2)
    assert v.failed and "demand an O(1) term" in v.reasons[0], v


def test_too_few_steps_are_inconclusive_and_bad_input_is_refused():
    assert "needs ≥ 3 steps" in judge_series([0.1, 0.05], [1e-2, 2.5e-3], [1e-5, 1e-5], 2).reasons[0]
    with pytest.raises(ValueError, match="`stderrs` must be positive"):
        judge_series(H, H**2, np.zeros(6), 2)
    with pytest.raises(ValueError, match="`order` must be a positive multiple of spacing=1"):
        judge_series(H, H**2, np.ones(6), 0)
    with pytest.raises(ValueError, match="`alpha` must be in \\(0, 1\\); got 2"):
        judge_series(H, H**2, np.ones(6), 2, alpha=2)


def test_the_next_term_is_added_when_the_data_demand_it():
    """A c₄ term the χ² test alone would let through (it is a few SE) is taken into the model,
    so its bias does not land on c₁ and fail a right order-2 series."""
    e = series(H, {2: -0.3, 3: 2.0, 4: 60.0})
    se = np.full(6, 2e-7)
    v = judge_series(H, e, se, 2)
    assert v.passed, v
    assert v.terms == 3


# ------------------------------------------------------------------------- stated probabilities
def _simulate(truth: np.ndarray, se: np.ndarray, order: int, alpha: float, n: int,
              seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([judge_series(H, truth + se * rng.standard_normal(6), se, order,
                                  alpha=alpha).verdict.value for _ in range(n)])


def test_the_false_failure_probability_is_at_most_alpha():
    """400 data sets of a right order-2 series (the measured dropout R_S coefficients and standard
    errors): failures ~ Binomial(400, ≤ α = 0.05). The bound 0.05·400 + 4.1·√(400·0.05·0.95)
    ≈ 38 is exceeded with probability < 1e-4 when the rule holds its level."""
    truth = series(H, {2: -0.352, 3: 0.55})
    se = np.array([6.2e-6, 4.1e-6, 2.2e-6, 1.45e-6, 6.8e-7, 4.4e-7])
    verdicts = _simulate(truth, se, 2, 0.05, 400, seed=1)
    fails = int((verdicts == "fail").sum())
    bound = 0.05 * 400 + stats.norm.ppf(1 - 1e-4) * math.sqrt(400 * 0.05 * 0.95)
    assert fails <= bound, fails
    assert (verdicts == "pass").mean() > 0.9


def test_the_detection_limit_is_where_the_test_fails_half_the_time():
    """Each of 300 simulated runs computes its own detection limit for a part of sensitivity
    0.0114 (c₁ per unit relative change; the dropout R_S measurement); its data shifted by that
    limit fail about half the time (|t₀ ± z| > z), by twice the limit almost always. The bands
    are 4.4 binomial standard errors wide."""
    truth = series(H7, {2: -0.352, 3: 0.55})
    se = np.array([6.2e-6, 4.1e-6, 2.2e-6, 1.45e-6, 6.8e-7, 4.4e-7, 1.4e-7])
    sensitivity = 0.0114
    rng = np.random.default_rng(2)
    at_limit, twice = [], []
    for _ in range(300):
        data = truth + se * rng.standard_normal(7)
        v = judge_series(H7, data, se, 2, alpha=0.01)
        if v.extended is None:  # no series fits (probability ≈ α): no limit to test
            continue
        # E g(SME) − E g(noise-free), exact here: the noise covariance scaled by 0 (change −1).
        limit = detection_limit(v, H7, sensitivity * H7, np.full(7, 1e-12), -1.0)
        assert limit == pytest.approx(v.lower_quantile * v.lower_stderr / sensitivity, rel=1e-6)
        at_limit.append(judge_series(H7, data + limit * sensitivity * H7, se, 2, alpha=0.01).failed)
        twice.append(judge_series(H7, data + 2 * limit * sensitivity * H7, se, 2, alpha=0.01).failed)
    assert len(at_limit) > 280
    rate = float(np.mean(at_limit))
    assert abs(rate - 0.5) < 4.4 * math.sqrt(0.25 / len(at_limit)), rate
    assert float(np.mean(twice)) > 0.95


def test_an_unseen_part_has_an_infinite_detection_limit():
    truth = series(H, {2: -0.352})
    v = judge_series(H, truth, np.full(6, 1e-6), 2)
    assert detection_limit(v, H, 1e-9 * H, np.full(6, 1e-6), -1.0) == math.inf


@pytest.mark.parametrize("order", [1, 2])
def test_verdicts_on_the_exact_sgd_weak_errors(order):
    """No Monte Carlo noise: the exact weak errors of the SGD least-squares SMEs (orders 1 and 2),
    given a tiny standard error, pass as their own order; the order-1 SME fails as order 2."""
    from smetool import SGDLeastSquares

    model = SGDLeastSquares.default().exact_moments()
    lrs = [2.0**-k for k in range(5, 10)]
    errs = np.asarray(model.weak_errors(SGDLeastSquares.default().x0.numpy(), lrs, 1.0,
                                        orders=[1, 2]).series("f", order))
    se = np.abs(errs) * 1e-4
    assert judge_series(lrs, errs, se, order).passed
    if order == 1:
        assert judge_series(lrs, errs, se, 2).failed


def test_the_slope_interval_is_widened_by_the_lack_of_fit():
    """fit_order (the log–log picture) inflates its covariance by max(1, χ²/dof): errors with a
    visible curvature get a wider slope interval than their standard errors alone give."""
    from smetool import fit_order

    h = np.array([0.1, 0.05, 0.025, 0.0125])
    e = h * (1 + 3 * h)
    se = e / 200
    fit = fit_order(h, e, se)
    X = np.column_stack([np.ones(4), np.log(h)])
    W = np.diag((e / se) ** 2)
    base = math.sqrt(np.linalg.inv(X.T @ W @ X)[1, 1])
    assert fit.reduced_chi2 > 10 and fit.inflation == pytest.approx(fit.reduced_chi2)
    assert fit.slope_stderr == pytest.approx(base * math.sqrt(fit.inflation), rel=1e-9)
