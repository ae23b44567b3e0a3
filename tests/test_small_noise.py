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
