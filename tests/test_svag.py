"""SVAG (Li, Malladi & Arora 2021): its gradient combination, its step against the exact moment
recursion, the exact O(1/l) weak error to the SME on least squares and on linear dropout, and the
Monte-Carlo order test of ``smetool verify svag``.

Monte-Carlo tolerances are 5 standard errors per compared number (two-sided false-failure
probability ≈ 6e-7 each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool import verify
from smetool.algorithms import DropoutAlgorithm, SGDLeastSquares
from smetool.algorithms.registry import plugins
from smetool.algorithms.svag import SVAG, svag_coefficients
from smetool.exact import LinearDropoutMoments, SVAGMoments

Z = 5.0


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1.0, max_value=1e6))
def test_coefficients_keep_the_mean_and_scale_the_variance(amplification):
    c_plus, c_minus = svag_coefficients(amplification)
    assert math.isclose(c_plus + c_minus, 1.0, rel_tol=0, abs_tol=1e-12)
    assert math.isclose(c_plus**2 + c_minus**2, amplification, rel_tol=1e-12)


@pytest.mark.parametrize("bad", [0.5, 0.0, -1.0, float("nan"), float("inf"), True])
def test_coefficients_reject_amplification_below_one(bad):
    with pytest.raises(ValueError, match="`amplification` must be a finite number ≥ 1"):
        svag_coefficients(bad)


def _one_step_moments(algo: SVAG, lr: float, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x0 = algo.initial_state(n)
    step = (algo.step(x0, lr, gen) - x0) / lr  # = −g_l, one draw per path
    return x0[:1], step


def test_one_sgd_step_has_mean_gradient_and_amplified_covariance():
    base = SGDLeastSquares.default(batch_size=2)
    algo = SVAG(base, base_lr=0.5)
    lr, n = 0.5 / 8, 400_000
    x0, step = _one_step_moments(algo, lr, n, seed=3)
    grad = base.gradient(x0)[0]
    se = step.std(dim=0) / math.sqrt(n)
    assert bool(((step.mean(dim=0) + grad).abs() <= Z * se).all())
    cov = torch.cov(step.T)
    exact = 8.0 * base.noise_covariance(x0)[0]
    # SE of a covariance entry: sqrt(Var((a − ā)(b − b̄)) / n), estimated from the draws.
    centred = step - step.mean(dim=0)
    prods = (centred.unsqueeze(2) * centred.unsqueeze(1)).reshape(n, -1)
    se_cov = (prods.std(dim=0) / math.sqrt(n)).reshape(cov.shape)
    assert bool(((cov - exact).abs() <= Z * se_cov).all()), (cov, exact)


def test_one_dropout_step_with_two_masks_has_mean_grad_ls_and_amplified_covariance():
    base = DropoutAlgorithm.default(width=4, n_points=8)
    algo = SVAG(base, base_lr=0.1)
    lr, n = 0.1 / 4, 200_000
    x0, step = _one_step_moments(algo, lr, n, seed=4)
    problem = base.problem
    mean_exact = -problem.expected_loss_grad(x0)[0]
    se = step.std(dim=0) / math.sqrt(n)
    assert bool(((step.mean(dim=0) - mean_exact).abs() <= Z * se).all())
    centred = step - step.mean(dim=0)
    prods = (centred.unsqueeze(2) * centred.unsqueeze(1)).reshape(n, -1)
    D = x0.shape[1]
    se_cov = (prods.std(dim=0) / math.sqrt(n)).reshape(D, D)
    exact = 4.0 * problem.noise_covariance(x0)[0]
    assert bool(((torch.cov(step.T) - exact).abs() <= Z * se_cov + 1e-12).all())


def test_step_matches_exact_recursion_monte_carlo():
    base = SGDLeastSquares.default()
    algo = SVAG(base, base_lr=0.5)
    lr, k, n = 0.5 / 4, 8, 200_000
    gen = torch.Generator().manual_seed(5)
    x = algo.initial_state(n)
    for _ in range(k):
        x = algo.step(x, lr, gen)
    path = algo.exact_moments().discrete_moments(base.x0.numpy(), lr, k * lr)
    outer = (x.unsqueeze(2) * x.unsqueeze(1)).reshape(n, -1)
    for est, exact in ((x, path.mean[0]), (outer, path.second[0].ravel())):
        se = est.std(dim=0).numpy() / math.sqrt(n)
        assert np.all(np.abs(est.mean(dim=0).numpy() - exact) <= Z * se), (est.mean(0), exact)


def test_amplification_one_is_the_base_algorithm_exactly():
    base = SGDLeastSquares.default()
    moments = SVAGMoments(base.exact_moments(), 0.25)
    np.testing.assert_allclose(moments.step_operator(0.25), base.exact_moments().step_operator(0.25),
                               rtol=0, atol=1e-14)


def _exact_svag_errors(moments, z0, base_lr):
    taus = [base_lr / 2**k for k in range(0, 9)]
    return moments.weak_errors(z0, taus, 1.0)


@pytest.mark.parametrize("problem", ["least_squares", "linear_dropout"])
def test_exact_weak_error_to_the_sme_is_order_one_in_one_over_l(problem):
    """Exact (no Monte Carlo): the SVAG-vs-SME weak error at T = 1 decays like 1/l for
    l = 1 … 256, the rate of Li, Malladi & Arora; the local slopes reach 1 within 0.01 and every
    error shrinks as l grows."""
    if problem == "least_squares":
        base_moments = SGDLeastSquares.default().exact_moments()
        z0 = np.array([2.0, -2.0])
    else:
        X = np.array([[1.0, 0.5, 0.2], [0.3, -1.0, 0.4], [-0.6, 0.2, 1.0], [0.9, 0.8, -0.5]])
        y = np.array([1.0, -0.5, 0.7, 0.2])
        base_moments = LinearDropoutMoments(X, y, keep_prob=0.8)
        z0 = np.array([1.0, -1.0, 0.5])
    err = _exact_svag_errors(SVAGMoments(base_moments, 0.25), z0, 0.25)
    for name in err.names:
        e = np.abs(err.series(name, 1))
        assert np.all(np.diff(e) < 0), (name, e)
        slopes = err.ratios(name, 1)
        assert abs(slopes[-1] - 1.0) < 0.01, (name, slopes)


def test_svag_reaches_the_sme_that_sgd_only_approximates():
    """At a fixed learning rate η the SGD–SME error stays put while SVAG's vanishes: SVAG is a
    way to sample the SME itself. Exact moments, least squares, η = 0.25, T = 1."""
    base = SGDLeastSquares.default().exact_moments()
    err = _exact_svag_errors(SVAGMoments(base, 0.25), np.array([2.0, -2.0]), 0.25)
    sgd = base.weak_errors(np.array([2.0, -2.0]), [0.25], 1.0, orders=[1])
    for name in err.names:
        assert math.isclose(err.series(name, 1)[0], sgd.series(name, 1)[0], rel_tol=1e-9)
        assert abs(err.series(name, 1)[-1]) < abs(sgd.series(name, 1)[0]) / 200


def test_verify_svag_default_run_has_order_one_and_matches_the_exact_errors():
    """``smetool verify svag`` (seed 0, the defaults, with control variates): every test
    function passes the project's verdict with power, the noise-free flow (which SVAG's target
    keeps at O(1) distance) is rejected, and each measured error agrees with the exact SVAG weak
    error within Z of its standard errors (the SME's solver error is removed by the
    extrapolation)."""
    spec = plugins()["svag"]
    algo = spec.build(dtype=torch.float64, device="cpu")
    result = verify(algo, spec.lrs, horizon=spec.horizon, n_paths=spec.n_paths,
                    steps_per_lr=spec.steps_per_lr, method=spec.method, seed=0, progress=False)
    assert all(v.passed for v in result.verdicts.values()), result.table()
    assert result.controls["noise-free"].rejected, result.table()
    moments = algo.exact_moments()
    exact = moments.weak_errors(algo.base.x0.numpy(), spec.lrs, spec.horizon)
    for row in result.rows:
        e = exact.series(row.test_function, 1)[list(spec.lrs).index(row.lr)]
        assert abs(row.error - e) <= Z * row.stderr, (row, e)


def test_sme_is_the_base_sme_at_base_lr():
    base = SGDLeastSquares.default()
    algo = SVAG(base, base_lr=0.5)
    x = algo.initial_state(3) + 0.1
    sde, ref = algo.sme(0.0625), base.sme(0.5)
    torch.testing.assert_close(sde.drift(0.0, x), ref.drift(0.0, x))
    torch.testing.assert_close(sde.diffusion(0.0, x), ref.diffusion(0.0, x))
    assert algo.test_functions().keys() == base.test_functions().keys()


def test_validation():
    base = SGDLeastSquares.default()
    with pytest.raises(TypeError, match="SVAG: `base` must be a StochasticGradientAlgorithm"):
        SVAG(object(), 0.5)
    with pytest.raises(ValueError, match="SVAG: `base_lr` must be a positive finite number; got -1"):
        SVAG(base, -1)
    algo = SVAG(base, 0.5)
    with pytest.raises(ValueError, match=r"must be at most `base_lr` = 0.5 .* got lr=1"):
        algo.step(algo.initial_state(2), 1.0, torch.Generator())
    with pytest.raises(ValueError, match="SVAG: `order` must be 1"):
        algo.sme(0.25, order=2)
    with pytest.raises(ValueError, match="SVAG: `lr` must be a positive finite number"):
        algo.sme(0.0)
    with pytest.raises(TypeError, match="has no exact moments"):
        SVAG(DropoutAlgorithm.default(width=2, n_points=4), 0.1).exact_moments()
    with pytest.raises(ValueError, match="SVAGMoments: the step `lr` must be at most"):
        SVAGMoments(base.exact_moments(), 0.5).step_operator(1.0)
