"""The heavy-ball plug-in: its step against the exact moment recursion, its SME against the exact
SME moments, and weak order 1 (exactly, and by Monte Carlo with a 99 % CI).

Monte-Carlo tolerances are 5 standard errors per compared number (false-failure probability
≈ 6e-7 each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import smetool
from smetool import ExactReference, fit_order, weak_error
from smetool.algorithms import SGDLeastSquares, SGDTwoLayer
from smetool.algorithms.momentum import HeavyBallSGD, HeavyBallSME

Z = 5.0


def _z0(algo):
    return algo.initial_state(1)[0].numpy()


def test_step_matches_exact_recursion_monte_carlo():
    algo = HeavyBallSGD(SGDLeastSquares.default(batch_size=2), damping=1.5)
    lr, k, N = 0.25, 8, 200_000
    gen = torch.Generator().manual_seed(5)
    z = algo.initial_state(N)
    for _ in range(k):
        z = algo.step(z, lr, gen)
    path = algo.exact_moments().discrete_moments(_z0(algo), lr, k * lr)
    outer = (z.unsqueeze(2) * z.unsqueeze(1)).reshape(N, -1)
    for est, exact in ((z, path.mean[0]), (outer, path.second[0].ravel())):
        se = est.std(dim=0).numpy() / math.sqrt(N)
        assert np.all(np.abs(est.mean(dim=0).numpy() - exact) <= Z * se + 1e-12)


def test_sme_drift_and_diffusion():
    algo = HeavyBallSGD(SGDTwoLayer.default(batch_size=2), damping=2.0)
    D = algo.dim
    gen = torch.Generator().manual_seed(0)
    z = algo.initial_state(3) + 0.2 * torch.randn(3, 2 * D, generator=gen, dtype=torch.float64)
    sde = algo.sme(0.1)
    x, v = z[:, :D], z[:, D:]
    torch.testing.assert_close(sde.drift(0.0, z), torch.cat([v, -2.0 * v - algo.base.gradient(x)], 1))
    sigma = sde.diffusion(0.0, z)
    assert sigma.shape == (3, 2 * D, algo.base.n_points) and bool((sigma[:, :D] == 0).all())
    torch.testing.assert_close(sigma[:, D:] @ sigma[:, D:].transpose(1, 2),
                               0.1 * algo.base.noise_covariance(x))
    dW = torch.randn(3, algo.base.n_points, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(sde.diffusion_product(0.0, z, dW), (sigma @ dW.unsqueeze(-1))[..., 0])


def test_sme_with_platen_matches_exact_sme_moments():
    algo, lr, T, N = HeavyBallSGD.default(), 0.25, 0.5, 20_000
    sol = smetool.solve(algo.sme(lr), algo.initial_state(N), (0.0, T), dt=lr / 4,
                        method=smetool.PlatenWeak2(), generator=9)
    exact = algo.exact_moments()
    path = exact.sme_moments(_z0(algo), lr, 1, T)
    tests = exact.test_functions()
    for name, g in algo.test_functions().items():
        v = g(sol.final)
        se = float(v.std()) / math.sqrt(N)
        assert abs(float(v.mean()) - float(path.expectation(tests[name])[0])) <= Z * se, name


def test_exact_weak_error_is_order_one_on_the_default():
    algo = HeavyBallSGD.default()
    err = algo.exact_moments().weak_errors(_z0(algo), [2.0**-k for k in range(3, 11)], 1.0)
    for name in err.names:
        r = err.ratios(name, 1)
        assert abs(r[-1] - 1) < 0.02, (name, r)


def test_order_one_weak_error_monte_carlo_slope():
    """Heavy ball (Monte Carlo, 2·10⁵ paths per step size) against the exact SME moments: every
    error resolved, equal to the exact error within 5 SE, and a 99 % CI containing 1."""
    algo, T = HeavyBallSGD.default(), 1.0
    lrs = [2.0**-k for k in range(3, 8)]
    exact, z0 = algo.exact_moments(), _z0(algo)
    tests = exact.test_functions()
    names = ["f", "x[0]", "v_norm_sq"]

    def reference(lr):
        path = exact.sme_moments(z0, lr, 1, T)
        return {k: float(path.expectation(tests[k])[0]) for k in names}

    def approximation(lr):
        def producer(n, gen):
            z = algo.initial_state(n)
            for _ in range(round(T / lr)):
                z = algo.step(z, lr, gen)
            return z.unsqueeze(0)
        return producer

    funcs = {k: algo.test_functions()[k] for k in names}
    table = weak_error(ExactReference(reference), approximation, funcs, 200_000, seed=77,
                       steps=lrs, progress=False)
    exact_err = exact.weak_errors(z0, lrs, T, test_functions={k: tests[k] for k in names})
    for name in names:
        h, e, se = table.series(name)
        assert np.all(np.abs(e) >= Z * se), (name, e / se)
        np.testing.assert_array_less(np.abs(e - exact_err.series(name, 1)), Z * se)
        assert fit_order(h, e, se, min_snr=Z, confidence=0.99).contains(1.0), name


def test_validation_and_repr():
    base = SGDLeastSquares.default()
    with pytest.raises(TypeError, match="HeavyBallSGD: `base` must be a FiniteSumSGD"):
        HeavyBallSGD("sgd", 1.0)
    with pytest.raises(ValueError, match="HeavyBallSGD: `damping` must be a positive finite number; got 0"):
        HeavyBallSGD(base, 0)
    with pytest.raises(ValueError, match=r"HeavyBallSGD: `v0` must be a finite tensor of shape \(2,\)"):
        HeavyBallSGD(base, 1.0, v0=[1.0, 2.0, 3.0])
    algo = HeavyBallSGD(base, 2.0)
    with pytest.raises(ValueError, match=r"`lr` must satisfy damping · lr < 1"):
        algo.step(algo.initial_state(2), 0.5, torch.Generator())
    with pytest.raises(ValueError, match=r"the state must have shape \(paths, 4\)"):
        algo.step(torch.zeros(2, 2, dtype=torch.float64), 0.1, torch.Generator())
    with pytest.raises(ValueError, match="HeavyBallSME: `order` must be 1"):
        algo.sme(0.1, 2)
    with pytest.raises(TypeError, match="HeavyBallSME: `algorithm` must be a HeavyBallSGD"):
        HeavyBallSME(base, 0.1)
    with pytest.raises(TypeError, match="has no exact moments"):
        HeavyBallSGD(SGDTwoLayer.default(), 1.0).exact_moments()
    assert algo.name == "momentum" and algo.sme_orders == (1,)
    assert repr(algo).startswith("HeavyBallSGD(SGDLeastSquares(") and "lr=0.1" in repr(algo.sme(0.1))
    z = algo.initial_state(3, dtype=torch.float32)
    assert z.shape == (3, 4) and algo.step(z, 0.1, torch.Generator().manual_seed(0)).dtype == torch.float32
