"""Tests of weak_error, fit_order, Richardson extrapolation and the weak-error plot.

Reference problem: geometric Brownian motion dX = μX dt + σX dW, X_0 = 1, for which the exact SDE
moments and the exact moments of Euler–Maruyama are known in closed form (numerics notes §2.1):
E X_N = (1 + μh)^N, E X_N² = ((1 + μh)² + σ²h)^N, E X_t = e^{μt}, E X_t² = e^{(2μ+σ²)t}.
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch

import smetool
from smetool import (
    ExactReference,
    OrderFit,
    SDEProducer,
    WeakErrorTable,
    WeakOrderWarning,
    fit_order,
    richardson,
    richardson_monte_carlo,
    richardson_weights,
    weak_error,
)

F64 = torch.float64
MU, SIGMA, T = -1.0, 0.2, 1.0
TESTS = {"x": lambda x: x[:, 0], "x2": lambda x: x[:, 0] ** 2}
STEPS = [1 / 4, 1 / 8, 1 / 16, 1 / 32]


def em_moments(h: float, t: float = T) -> tuple[float, float]:
    n = round(t / h)
    return (1 + MU * h) ** n, ((1 + MU * h) ** 2 + SIGMA**2 * h) ** n


def sde_moments(t: float = T) -> tuple[float, float]:
    return math.exp(MU * t), math.exp((2 * MU + SIGMA**2) * t)


def em_bias(h: float, t: float = T) -> np.ndarray:
    return np.subtract(em_moments(h, t), sde_moments(t))


# Leading EM error constants (numerics notes §2.1): e = C h + O(h²).
C_X = -MU**2 * T / 2 * math.exp(MU * T)
C_X2 = -T / 2 * (2 * MU**2 + 4 * MU * SIGMA**2 + SIGMA**4) * math.exp((2 * MU + SIGMA**2) * T)


def coupled_gbm(h: float, scheme: str, fine: float | None = None):
    """Hand-written producers driven by N(0, 1) draws on the grid of step ``fine`` (default h).

    ``scheme="em"``: Euler–Maruyama with step h, each increment the sum of the fine increments in
    its step; ``"exact"``: the exact GBM at T from the sum of all increments. Both draw the same
    ``(T/fine, n)`` normals, so with generators in the same state they are coupled.
    """
    fine = h if fine is None else fine
    n_fine, group = round(T / fine), round(h / fine)

    def producer(n, gen, *, antithetic=False):
        z = torch.randn(n_fine, n, generator=gen, dtype=F64)
        if antithetic:
            z = -z
        dw = math.sqrt(fine) * z
        if scheme == "exact":
            x = torch.exp((MU - SIGMA**2 / 2) * T + SIGMA * dw.sum(0))
        else:
            x = torch.ones(n, dtype=F64)
            for inc in dw.reshape(n_fine // group, group, n).sum(1):
                x = x + MU * x * h + SIGMA * x * inc
        return x.reshape(1, n, 1)

    return producer


# ----------------------------------------------------------------------------- weak_error


def test_em_weak_error_matches_exact_discrete_bias_and_order_one():
    """EM through smetool.solve against the exact SDE moments, independent sampling.

    Each estimated error must equal the exact discrete bias within 5 SE (two-sided false-failure
    probability 6e-7 per entry, 16 entries). Before fitting, every point at t = T is checked to be
    resolved (|e| ≥ 5 SE; the expected SNR is 11–13 at h = 1/32, so this fails with probability
    < 1e-8). The steps 1/4 … 1/32 are pre-asymptotic (exact local slopes 1.085, 1.040, 1.019 for
    E X), so a 95 % interval of the slope excludes 1 in about 1 run in 5 with 40,000 paths (we
    measured 78 % over 100 seeds): the slope is asserted through the 99 % interval (t quantile with
    2 dof; it contained 1 in 100/100 runs), and the leading constant through the signed two-term
    fit, which models the curvature.
    """
    sde = smetool.FunctionSDE(lambda t, x: MU * x, lambda t, x: SIGMA * x)
    x0 = torch.ones(1, dtype=F64)

    def em(h):
        return SDEProducer(sde, x0, (0.0, T), dt=h, save_at=[0.5, T], method=smetool.EulerMaruyama())

    ref = ExactReference({"x": [sde_moments(0.5)[0], sde_moments()[0]],
                          "x2": [sde_moments(0.5)[1], sde_moments()[1]]})
    table = weak_error(ref, em, TESTS, 40_000, seed=20, steps=STEPS, times=(0.5, T),
                       chunk_size=20_000, progress=False)
    assert table.exact_reference and table.times == (0.5, T)
    exact = torch.tensor(np.array([[em_bias(h, t) for h in STEPS] for t in (0.5, T)]), dtype=F64)
    exact = exact.permute(2, 0, 1)  # (K, S, L)
    assert bool(((table.errors - exact).abs() <= 5 * table.stderrs).all())
    assert torch.equal(table.reference_stderrs, torch.zeros_like(table.stderrs))
    torch.testing.assert_close(table.approx_stderrs, table.stderrs)
    assert bool((table.snr[:, -1] >= 5).all()), table.snr[:, -1]
    for name, c in (("x", C_X), ("x2", C_X2)):
        fit = table.fit(name, confidence=0.99)
        assert fit.contains(1.0), fit
        assert all(fit.used) and not fit.flagged and not fit.sign_change
        two = table.fit(name, order=1).two_term
        assert abs(two.a - c) <= 5 * two.a_stderr, (two, c)


def test_common_random_numbers_and_antithetic_variance_reduction():
    """EM vs the exact GBM sharing the Brownian increments (CRN), and antithetic pairs.

    The paired SE must be honest: each error equals the exact EM bias within 5 SE even though the
    SE is 10–50 times smaller than with independent sampling. Measured factors (20,000 paths,
    seed 1, h = 1/4 … 1/32): CRN 77 → 2,200 (E X), 240 → 2,700 (E X²); antithetic alone 22 → 25
    (E X), 5.8 → 6.6 (E X²); antithetic on top of CRN 0.7–1.7 and 0.57 (the CRN difference is
    dominated by even-order terms, which antithetic pairs do not cancel).
    """
    kwargs = dict(seed=1, steps=STEPS, chunk_size=20_000, progress=False)
    exact = lambda h: coupled_gbm(h, "exact")  # noqa: E731
    em = lambda h: coupled_gbm(h, "em")  # noqa: E731
    bias = torch.tensor(np.array([em_bias(h) for h in STEPS]).T, dtype=F64)[:, None, :]

    plain = weak_error(exact, em, TESTS, 20_000, **kwargs)
    crn = weak_error(exact, em, TESTS, 20_000, common_random_numbers=True, **kwargs)
    anti = weak_error(exact, em, TESTS, 20_000, antithetic=True, **kwargs)
    both = weak_error(exact, em, TESTS, 20_000, common_random_numbers=True, antithetic=True,
                      **kwargs)
    for table in (plain, crn, anti, both):
        assert bool(((table.errors - bias).abs() <= 5 * table.stderrs).all()), table
    # Independent sampling: the factor estimates 1 (its sampling s.d. is ≈ 0.01 here; 0.1 = 10 s.d.).
    assert bool(((plain.variance_reduction - 1).abs() < 0.1).all())
    assert plain.antithetic_factor is None
    # The reported factors are the ratios of the achieved variances (estimated: allow 30 %).
    torch.testing.assert_close(crn.variance_reduction, plain.stderrs**2 / crn.stderrs**2, rtol=0.3, atol=0)
    torch.testing.assert_close(anti.variance_reduction, plain.stderrs**2 / (2 * anti.stderrs**2),
                               rtol=0.3, atol=0)
    torch.testing.assert_close(both.variance_reduction, both.crn_factor * both.antithetic_factor)
    # Coupling through shared increments: the strong error is O(h^½), so the factor grows like 1/h.
    assert bool((crn.crn_factor[..., 0] > 20).all()) and bool((crn.crn_factor[..., -1] > 500).all())
    assert bool((anti.antithetic_factor[0] > 10).all()) and bool((anti.antithetic_factor[1] > 3).all())
    assert anti.count == 20_000


def test_exact_reference_depending_on_the_step_gives_zero_bias():
    """Against EM's own exact moments the error is pure noise: |e| ≤ 5 SE everywhere."""
    ref = ExactReference(lambda h: dict(zip(("x", "x2"), em_moments(h))))
    table = weak_error(ref, lambda h: coupled_gbm(h, "em"), TESTS, 5_000, seed=3,
                       steps=[0.25, 0.125], chunk_size=5_000, antithetic=True, progress=False)
    assert bool((table.errors.abs() <= 5 * table.stderrs).all())
    torch.testing.assert_close(table.reference_means[..., 0],
                               torch.tensor([[em_moments(0.25)[0]], [em_moments(0.25)[1]]], dtype=F64))
    with pytest.raises(ValueError, match="at least two steps with a resolved error"):
        table.fit("x", min_snr=1e6)


def test_weak_error_is_reproducible_and_checkpointed(tmp_path):
    calls = {"n": 0}

    def em(h):
        prod = coupled_gbm(h, "em")

        def counted(n, gen):
            calls["n"] += 1
            return prod(n, gen)

        return counted

    kwargs = dict(seed=9, steps=[0.5, 0.25], chunk_size=500, progress=False)
    ref = lambda h: coupled_gbm(h, "exact")  # noqa: E731
    a = weak_error(ref, em, TESTS, 1_000, checkpoint=tmp_path / "ck", tag="em", **kwargs)
    assert calls["n"] == 4 and sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "step0.pt", "step1.pt"]
    b = weak_error(ref, em, TESTS, 1_000, checkpoint=tmp_path / "ck", tag="em", **kwargs)
    assert calls["n"] == 4  # answered from the finished checkpoints
    c = weak_error(ref, em, TESTS, 1_000, **kwargs)
    assert torch.equal(a.errors, b.errors) and torch.equal(a.errors, c.errors)
    with pytest.raises(ValueError, match="common_random_numbers: checkpoint False vs now True"):
        weak_error(ref, em, TESTS, 1_000, checkpoint=tmp_path / "ck", tag="em",
                   common_random_numbers=True, **kwargs)


def test_weak_error_table_methods():
    table = weak_error({0.5: coupled_gbm(0.5, "exact"), 0.25: coupled_gbm(0.25, "exact")},
                       {0.5: coupled_gbm(0.5, "em"), 0.25: coupled_gbm(0.25, "em")}, TESTS, 2_000,
                       seed=0, steps=[0.5, 0.25], chunk_size=1_000, progress=False)
    assert isinstance(table, WeakErrorTable) and table.errors.shape == (2, 1, 2)
    steps, errors, stderrs = table.series("x2")
    assert steps.tolist() == [0.5, 0.25] and errors.shape == stderrs.shape == (2,)
    d = json.loads(json.dumps(table.to_dict(), allow_nan=False))
    assert d["steps"] == [0.5, 0.25] and d["antithetic_factor"] is None and len(d["errors"]) == 2
    text = repr(table)
    assert text.startswith("WeakErrorTable(count=2000, seed=0)") and "h=0.25" in text
    with pytest.raises(KeyError, match="no test function 'y'"):
        table.series("y")
    with pytest.raises(IndexError, match="`time_index` must be in"):
        table.series("x", 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": []}, ValueError, "`steps` must hold at least 1 value"),
        ({"steps": [0.1, -0.1]}, ValueError, "`steps` must be positive and finite; got -0.1"),
        ({"steps": [0.1, 0.1]}, ValueError, "`steps` must be distinct"),
        ({"steps": 0.1}, ValueError, "`steps` must be a sequence of positive numbers"),
        ({"n_paths": 0}, ValueError, "`n_paths` must be an integer ≥ 2"),
        ({"n_paths": 1}, ValueError,
         r"`n_paths` must be an integer ≥ 2 \(a standard error needs a variance\); got 1"),
        ({"seed": -3}, ValueError, "`seed` must be a non-negative integer"),
        ({"reference": 3.0}, TypeError, "`reference` must be an ExactReference or a callable"),
        ({"approximation": 3.0}, TypeError, "`approximation` must be a callable or mapping"),
        ({"approximation": lambda h: 1.0}, TypeError, "`approximation` must give a path producer"),
        ({"reference": ExactReference({"x": 1.0})}, ValueError,
         r"the exact reference must give one entry per test function \['x', 'x2'\]"),
        ({"reference": ExactReference({"x": [1.0, 2.0, 3.0], "x2": 1.0})}, ValueError,
         r"exact reference for 'x' must be a scalar or have one value per save time \(1\)"),
        ({"reference": ExactReference({"x": 1.0, "x2": 1.0}), "common_random_numbers": True},
         ValueError, "common_random_numbers=True needs a sampled reference"),
        ({"reference": lambda h: (lambda n, g: torch.zeros(2, n, 1, dtype=F64))}, ValueError,
         "`reference` returned 2 save times"),
        ({"approximation": lambda h: (lambda n, g: torch.zeros(1, n, 1, dtype=F64)),
          "antithetic": True}, TypeError, "needs `approximation` to accept the keyword `antithetic`"),
    ],
)
def test_weak_error_validation(kwargs, error, match):
    args = dict(reference=lambda h: coupled_gbm(h, "exact"), approximation=lambda h: coupled_gbm(h, "em"),
                test_functions=TESTS, n_paths=10, seed=0, steps=[0.5], chunk_size=10, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        weak_error(args.pop("reference"), args.pop("approximation"), args.pop("test_functions"),
                   args.pop("n_paths"), **args)
    with pytest.raises(TypeError, match="`expectations` must be a dict"):
        ExactReference(3)


def test_weak_error_mapping_without_the_step():
    with pytest.raises(KeyError, match="`approximation` has no producer for step 0.25"):
        weak_error(lambda h: coupled_gbm(h, "exact"), {0.5: coupled_gbm(0.5, "em")}, TESTS, 10,
                   seed=0, steps=[0.25], progress=False)


# ----------------------------------------------------------------------------- fit_order


def test_fit_order_on_an_exact_power_law():
    h = np.array([0.2, 0.1, 0.05, 0.025])
    e = 0.3 * h**2
    fit = fit_order(h, e, e / 50)
    assert fit.slope == pytest.approx(2.0, abs=1e-12)
    assert fit.constant == pytest.approx(0.3, rel=1e-12)
    assert fit.contains(2.0) and fit.dof == 2 and fit.inflation == 1.0
    assert fit.ratios == pytest.approx([2.0, 2.0, 2.0], abs=1e-12)
    assert fit.ratio_steps[0] == (0.2, 0.1)
    assert fit.two_term.order == 2 and fit.two_term.a == pytest.approx(0.3, rel=1e-9)
    assert fit.two_term.b == pytest.approx(0.0, abs=1e-8)
    exact = fit_order(h, -e)  # exact errors: unweighted, zero residuals, a degenerate interval
    assert exact.slope == pytest.approx(2.0, abs=1e-12) and exact.ci[1] - exact.ci[0] < 1e-10
    assert exact.two_term.a == pytest.approx(-0.3, rel=1e-9)
    two = fit_order(h[:2], e[:2])
    assert math.isnan(two.ci[0]) and two.dof == 0
    assert json.loads(json.dumps(two.to_dict(), allow_nan=False))["ci"] == [None, None]
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert d["used"] == [True] * 4 and d["two_term"]["order"] == 2
    assert "OrderFit(slope=2.0000" in repr(fit)


def test_fit_order_exact_em_errors_show_the_preasymptotic_regime():
    """On the exact EM errors (no noise) the local slope over 1/4…1/32 is 1.047, not 1: the OLS
    interval excludes 1, and the two-term fit recovers the leading constant to 1 %."""
    e = [em_bias(h)[0] for h in STEPS]
    fit = fit_order(STEPS, e)
    assert 1.0 < fit.ci[0] < fit.slope < 1.06
    assert fit.ratios == pytest.approx([1.085, 1.040, 1.019], abs=1e-3)
    assert fit.two_term.a == pytest.approx(C_X, rel=1e-2)
    assert fit_order(STEPS[1:], e[1:], order=1).two_term.a == pytest.approx(C_X, rel=2e-3)


def test_fit_order_interval_coverage():
    """Synthetic errors e_i ~ N(0.3 h_i, (0.3 h_i / 15)²), five steps, 400 replicates.

    The 95 % intervals of the slope and of the leading constant must cover at ≥ 95 % − 4 sd with
    sd = sqrt(.95·.05/400) = 0.0109 (false-failure probability ≈ 3e-5; the intervals are
    conservative by construction: t quantile with 3 dof and inflation max(1, χ²/dof)).
    """
    rng = np.random.default_rng(12345)
    h = 2.0 ** -np.arange(2, 7)
    truth = 0.3 * h
    se = truth / 15
    slope_hits = a_hits = 0
    for _ in range(400):
        e = truth + se * rng.standard_normal(h.size)
        fit = fit_order(h, e, se, order=1)
        slope_hits += fit.contains(1.0)
        a_hits += fit.two_term.a_ci[0] <= 0.3 <= fit.two_term.a_ci[1]
    floor = 0.95 - 4 * math.sqrt(0.95 * 0.05 / 400)
    assert slope_hits / 400 >= floor, slope_hits
    assert a_hits / 400 >= floor, a_hits


def test_fit_order_flags_unresolved_points_and_sign_changes():
    h = [0.4, 0.2, 0.1, 0.05]
    with pytest.warns(WeakOrderWarning, match=r"excluded h=0.05 \(\|e\|/SE = 1.00 < min_snr = 3\)"):
        fit = fit_order(h, [0.4, 0.2, 0.1, 0.01], [0.01, 0.01, 0.01, 0.01])
    assert fit.used == (True, True, True, False)
    assert fit.flagged[0].index == 3 and fit.flagged[0].snr == pytest.approx(1.0)
    assert "excluded h=0.05" in repr(fit)
    with pytest.warns(WeakOrderWarning, match="error is exactly 0"):
        fit_order(h, [0.4, 0.2, 0.1, 0.0])
    # e = h − 4h²: changes sign at h = 1/4; the signed two-term fit still recovers a = 1, b = −4.
    hh = np.array([0.4, 0.3, 0.2, 0.1, 0.05])
    e = hh - 4 * hh**2
    with pytest.warns(WeakOrderWarning, match="change sign"):
        fit = fit_order(hh, e, np.full(5, 1e-4), order=1)
    assert fit.sign_change and "WARNING" in repr(fit)
    assert fit.two_term.a == pytest.approx(1.0, rel=1e-9) and fit.two_term.b == pytest.approx(-4.0, rel=1e-9)
    assert fit.two_term.a_ci[0] < 1.0 < fit.two_term.a_ci[1]


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([0.1, 0.05], [1.0]), {}, r"must have the same length; got 2, 1, 1"),
        (([0.1, 0.05], [1.0, 0.5], [0.1]), {}, "must have the same length; got 2, 2, 1"),
        (([0.1, -0.05], [1.0, 0.5]), {}, "`steps` must be positive and finite"),
        (([0.1, 0.1], [1.0, 0.5]), {}, "`steps` must be distinct"),
        (([[0.1, 0.05]], [1.0, 0.5]), {}, r"`steps` must be one-dimensional"),
        (([0.1, 0.05], [1.0, float("nan")]), {}, "`errors` must be finite"),
        (([0.1, 0.05], [1.0, 0.5], [0.1, -0.1]), {}, "`stderrs` must be finite and non-negative"),
        (([0.1, 0.05], [1.0, 0.5], [0.1, 0.0]), {}, "all positive .* or all zero"),
        (([0.1, 0.05], [1.0, 0.5]), {"min_snr": -1}, r"`min_snr` must be a finite number ≥ 0"),
        (([0.1, 0.05], [1.0, 0.5]), {"confidence": 1.0}, r"`confidence` must be in \(0, 1\)"),
        (([0.1, 0.05], [1.0, 0.5]), {"order": 0}, "`order` must be a positive number"),
        (([0.1], [1.0]), {}, "at least two steps with a resolved error"),
    ],
)
def test_fit_order_validation(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_order(*args, **kwargs)


# ----------------------------------------------------------------------------- Richardson


def test_richardson_weights():
    np.testing.assert_allclose(richardson_weights(2, order=1), [2.0, -1.0], rtol=1e-14)
    np.testing.assert_allclose(richardson_weights(3, order=2) * 21, [32.0, -12.0, 1.0], rtol=1e-13)
    w = richardson_weights(4, order=1.5, ratio=3)
    r = 3.0 ** np.arange(4)
    np.testing.assert_allclose([w.sum(), w @ r**1.5, w @ r**2.5, w @ r**3.5], [1, 0, 0, 0], atol=1e-10)
    with pytest.raises(ValueError, match="`levels` must be an integer ≥ 2; got 1"):
        richardson_weights(1)
    with pytest.raises(ValueError, match="`order` must be a positive number"):
        richardson_weights(2, order=0)
    with pytest.raises(ValueError, match="`ratio` must be a number > 1"):
        richardson_weights(2, ratio=1)


def test_richardson_on_exact_moments_raises_the_order():
    """Closed forms (numerics notes §2.1/§5): extrapolating EM from H/2 and H leaves
    −Tμ³(3Tμ+8)/48 e^{μT} H²; 32/21·(order-2 Taylor) levels leave 4Tμ⁵(5Tμ−18)/315 e^{μT} h⁴."""
    m1 = lambda h: (1 + MU * h) ** round(T / h)  # noqa: E731
    m2 = lambda h: (1 + MU * h + MU**2 * h**2 / 2) ** round(T / h)  # noqa: E731
    H = 1 / 128
    r = richardson({H / 2: m1(H / 2), H: m1(H)})
    lead = -T * MU**3 * (3 * T * MU + 8) / 48 * math.exp(MU * T) * H**2
    assert r.steps == (H / 2, H) and r.order == 2 and r.stderr is None
    assert float(r.value) - math.exp(MU * T) == pytest.approx(lead, rel=0.03)
    h = 1 / 256
    r4 = richardson([m2(h), m2(2 * h), m2(4 * h)], order=2)
    lead4 = 4 * T * MU**5 * (5 * T * MU - 18) / 315 * math.exp(MU * T) * h**4
    assert r4.order == 4 and float(r4.value) - math.exp(MU * T) == pytest.approx(lead4, rel=0.02)
    errors = [float(richardson([m2(k), m2(2 * k), m2(4 * k)], order=2).value) - math.exp(MU * T)
              for k in (1 / 16, 1 / 32, 1 / 64, 1 / 128)]
    assert fit_order([1 / 16, 1 / 32, 1 / 64, 1 / 128], errors).slope == pytest.approx(4.0, abs=0.1)
    assert "remaining order=4" in repr(r4)


def test_richardson_standard_errors_and_validation():
    r = richardson([[1.0, 2.0], [3.0, 5.0]], [[0.1, 0.2], [0.3, 0.1]])
    torch.testing.assert_close(r.value, torch.tensor([-1.0, -1.0], dtype=F64))
    expected = torch.tensor([math.sqrt(0.04 + 0.09), math.sqrt(0.16 + 0.01)], dtype=F64)
    torch.testing.assert_close(r.stderr, expected)
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["weights"] == pytest.approx([2.0, -1.0])
    with pytest.raises(ValueError, match=r"steps of `estimates` must be h, 2·h"):
        richardson({0.1: 1.0, 0.3: 2.0})
    with pytest.raises(ValueError, match="`stderrs` must be a mapping with the same steps"):
        richardson({0.1: 1.0, 0.2: 2.0}, [0.1, 0.1])
    with pytest.raises(ValueError, match="`stderrs` must match `estimates` in shape"):
        richardson([1.0, 2.0], [[0.1], [0.1]])
    with pytest.raises(ValueError, match="`stderrs` must be non-negative"):
        richardson([1.0, 2.0], [0.1, -0.1])
    with pytest.raises(ValueError, match="`levels` must be an integer ≥ 2"):
        richardson([1.0])
    with pytest.raises(ValueError, match="`estimates` must hold numbers or arrays of one common shape"):
        richardson([[1.0, 2.0], [1.0]])


def test_richardson_monte_carlo_pairs_the_levels():
    """Levels h = 1/16, 1/8 sharing the fine Brownian increments: the extrapolated mean equals the
    exact 2 E Y^h − E Y^{2h} within 5 SE. Coupled, 2 Y^h − Y^{2h} ≈ Y^h has variance ≈ Var g,
    against (2² + 1²) Var g for independent levels: the SE ratio approaches √5 ≈ 2.24."""
    h = 1 / 16
    ext = richardson_monte_carlo(lambda s: coupled_gbm(s, "em", fine=h), TESTS, 20_000, seed=4,
                                 step=h, chunk_size=10_000, progress=False)
    target = 2 * np.array(em_moments(h)) - np.array(em_moments(2 * h))
    assert ext.paired and ext.steps == (h, 2 * h) and ext.value.shape == (2, 1)
    assert bool(((ext.value[:, 0] - torch.tensor(target)).abs() <= 5 * ext.stderr[:, 0]).all())
    assert bool((ext.independent_stderr > 2 * ext.stderr).all())
    torch.testing.assert_close(ext.value, 2 * ext.level_means[0] - ext.level_means[1])
    # The extrapolated bias vs the SDE is O(h²), far below EM's O(h) bias.
    assert np.all(np.abs(target - sde_moments()) < 0.1 * np.abs(em_bias(h)))
    anti = richardson_monte_carlo(lambda s: coupled_gbm(s, "em", fine=h), TESTS, 2_000, seed=4,
                                  step=h, chunk_size=1_000, antithetic=True, progress=False)
    assert anti.count == 2_000
    with pytest.raises(ValueError, match="`step` must be a positive finite number"):
        richardson_monte_carlo(lambda s: coupled_gbm(s, "em"), TESTS, 10, seed=0, step=0.0)
    with pytest.raises(TypeError, match="must give a path producer for step"):
        richardson_monte_carlo(lambda s: None, TESTS, 10, seed=0, step=0.5)


# ----------------------------------------------------------------------------- plotting


def test_plot_weak_errors(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from smetool.plotting import plot_weak_errors

    table = weak_error(lambda h: coupled_gbm(h, "exact"), lambda h: coupled_gbm(h, "em"), TESTS,
                       4_000, seed=0, steps=STEPS, chunk_size=4_000, common_random_numbers=True,
                       progress=False)
    fig = plot_weak_errors(table, reference_order=1, path=tmp_path / "weak.png", title="EM")
    assert (tmp_path / "weak.png").stat().st_size > 0
    assert len(fig.axes[0].lines) >= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakOrderWarning)
        fit = fit_order([0.4, 0.2, 0.1, 0.05], [0.4, 0.2, 0.1, 0.01], [0.01] * 4)
    assert isinstance(fit, OrderFit)
    fig2 = plot_weak_errors(fit, reference_order=1)
    plt.close(fig)
    plt.close(fig2)
    with pytest.raises(TypeError, match="`data` must be a WeakErrorTable or an OrderFit"):
        plot_weak_errors([1, 2])


def test_plot_without_matplotlib(monkeypatch):
    from smetool.plotting import plot_weak_errors

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    fit = fit_order([0.2, 0.1], [0.2, 0.1], [0.01, 0.01])
    with pytest.raises(ImportError, match=r"plot_weak_errors needs matplotlib; install it with"):
        plot_weak_errors(fit)
