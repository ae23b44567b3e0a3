"""SmallNoiseHeun: weak error O(h² + ε h) for SDEs with noise covariance ε σσᵀ (no Monte Carlo).

On geometric Brownian motion ``dX = μX dt + √ε s X dW`` the scheme is linear,
``X+ = X (1 + μh + ½μ²h² + (1 + ½μh) √ε s ΔW)``, so its first two moments are exact powers; they
are checked against a one-path run of the solver and then compared with the exact SDE moments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smetool import FunctionSDE, SmallNoiseHeun, fit_order, solve

MU, S, X0, T = -1.0, 1.5, 1.0, 1.0


def heun_moments(eps: float, h: float) -> tuple[float, float]:
    n = round(T / h)
    a = 1 + MU * h + 0.5 * MU**2 * h**2
    b2 = (1 + 0.5 * MU * h) ** 2 * eps * S**2 * h
    return X0 * a**n, X0**2 * (a * a + b2) ** n


def exact_moments(eps: float) -> tuple[float, float]:
    return X0 * math.exp(MU * T), X0**2 * math.exp((2 * MU + eps * S**2) * T)


def test_closed_form_matches_the_solver_step():
    eps, h = 0.1, 0.125
    sde = FunctionSDE(lambda t, x: MU * x, lambda t, x: math.sqrt(eps) * S * x)
    gen = torch.Generator().manual_seed(0)
    dW = torch.randn(4, 1, generator=gen, dtype=torch.float64) * math.sqrt(h)
    x = torch.full((4, 1), 2.0, dtype=torch.float64)
    got = SmallNoiseHeun().step(sde, 0.0, x, h, dW, gen)
    factor = 1 + MU * h + 0.5 * MU**2 * h**2 + (1 + 0.5 * MU * h) * math.sqrt(eps) * S * dW
    torch.testing.assert_close(got, x * factor, rtol=1e-14, atol=0)
    sol = solve(sde, x, (0.0, h), dt=h, method=SmallNoiseHeun(), increments="gaussian",
                generator=torch.Generator().manual_seed(0))
    assert sol.final.shape == (4, 1)


@pytest.mark.parametrize("r", [2, 8])
def test_weak_error_is_second_order_in_eps_at_h_eps_over_r(r):
    """With ``h = ε/r`` the exact second-moment error decays like ``ε²`` (slope 2), where
    Euler–Maruyama's decays like ``ε``: the ``ε h`` term is what makes the difference."""
    eps = np.array([2.0**-k for k in range(3, 8)])
    errors = []
    for e in eps:
        errors.append(heun_moments(e, e / r)[1] - exact_moments(e)[1])
    # Exact errors: the successive ratios show the asymptotic slope; they approach 2 from above
    # (a pre-asymptotic ε³ term), so the last one is the sharpest.
    ratios = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(ratios - 2.0) < 0.15), ratios
    assert abs(ratios[-1] - 2.0) < 0.05, ratios
    assert abs(fit_order(eps, errors).slope - 2.0) < 0.1


def test_error_at_fixed_noise_is_first_order_in_h():
    """For a fixed (not small) noise level the scheme is only weak order 1 in h."""
    eps = 1.0
    hs = np.array([2.0**-k for k in range(4, 9)])
    errors = [heun_moments(eps, h)[1] - exact_moments(eps)[1] for h in hs]
    fit = fit_order(hs, errors)
    assert abs(fit.slope - 1.0) < 0.1, fit


def test_drift_only_is_second_order():
    hs = np.array([2.0**-k for k in range(3, 8)])
    errors = [heun_moments(0.0, h)[0] - exact_moments(0.0)[0] for h in hs]
    fit = fit_order(hs, errors)
    assert abs(fit.slope - 2.0) < 0.1, fit


# Time-dependent drift with multiplicative noise: the non-additive branch of the step, whose
# corrector must evaluate the drift at t + h (issue 25: a mutant evaluating it at t survived the
# suite, because the time-dependent problems of the other tests only reach the additive branch).
MU0, MU1, S0, S1 = 0.8, -0.6, 0.5, 0.4


def _rate(c0: float, c1: float, t: float) -> float:
    return c0 + c1 * t


def _time_dependent_gbm(kind: str) -> FunctionSDE:
    def drift(t, x):
        return _rate(MU0, MU1, t) * x

    if kind == "diagonal":
        return FunctionSDE(drift, lambda t, x: _rate(S0, S1, t) * x, noise_kind="diagonal")
    if kind == "general":
        return FunctionSDE(drift, lambda t, x: (_rate(S0, S1, t) * x).unsqueeze(-1),
                           noise_kind="general", noise_dim=1)
    return FunctionSDE(drift, lambda t, x: torch.diag_embed((_rate(S0, S1, t) * x) ** 2),
                       noise_kind="covariance")


@pytest.mark.parametrize("kind", ["diagonal", "general", "covariance"])
def test_the_corrector_evaluates_the_drift_at_t_plus_h(kind):
    # One step from t = 0.3 is the affine map x (1 + ½h μ(t) + ½h μ(t+h)(1 + μ(t)h + σ(t)ΔW)
    # + σ(t)ΔW); with μ(t) in place of μ(t+h) it is off by ½ μ₁ h² (1 + …) = 5e-3 here.
    sde, h, t = _time_dependent_gbm(kind), 0.125, 0.3
    gen = torch.Generator().manual_seed(0)
    dW = torch.randn(4, 1, generator=gen, dtype=torch.float64) * math.sqrt(h)
    x = torch.full((4, 1), 2.0, dtype=torch.float64)
    got = SmallNoiseHeun().step(sde, t, x, h, dW, gen)
    mu, mu_next, sig = _rate(MU0, MU1, t), _rate(MU0, MU1, t + h), _rate(S0, S1, t)
    factor = 1 + 0.5 * h * mu + 0.5 * h * mu_next * (1 + mu * h + sig * dW) + sig * dW
    torch.testing.assert_close(got, x * factor, rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", ["diagonal", "general", "covariance"])
def test_the_mean_is_second_order_with_a_time_dependent_drift(kind):
    # The step is affine in each ΔW and linear in x, so E X_N is the run with ΔW = 0: exact, no
    # Monte Carlo. E X_T = x0 exp(μ₀T + μ₁T²/2); Heun's mean error is O(h²) (ratio 4 per
    # halving), and O(h) (ratio 2) with the drift of the corrector taken at t.
    sde, x0 = _time_dependent_gbm(kind), 1.0
    exact = x0 * math.exp(MU0 * T + MU1 * T * T / 2)
    errors = []
    for n in (16, 32, 64):
        h, x = T / n, torch.full((1, 1), x0, dtype=torch.float64)
        zero = torch.zeros(1, 1, dtype=torch.float64)
        for k in range(n):
            x = SmallNoiseHeun().step(sde, k * h, x, h, zero, None)
        errors.append(float(x) - exact)
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(abs(r - 4.0) < 0.2 for r in ratios), (errors, ratios)
