"""Calibration of every weak-error estimator: over 50 independent seeds per mode, the z-scores of
the estimate against its exact expectation must look standard normal.

For each mode, learning rate (or step) and test function, ``z_j = (ê_j − e) / SE_j`` over seeds
``j = 1 … M``: under a correct estimator with a correct standard error ``Σ z_j² ~ χ²_M`` and
``√M · mean(z) ~ N(0, 1)`` (up to the O(1/N) bias of a fitted control-variate coefficient, which
is far below these tolerances). Each mode's checks share a false-failure probability of 1e-3
(Bonferroni over its combinations and the two statistics), so this file fails a right pipeline
with probability below 1 %. A standard error mis-stated by a factor 1.5 moves ``Σ z²`` from
about M to 2.25 M, outside the band; a control variate subtracted with the wrong coefficient
(the sign error fixed in 0.2) inflates the spread by a factor of 3–12.

The ground truth is exact, never simulated: :class:`~smetool.algorithms.sgd_scalar.ScalarQuadraticSGD`
(SGD with multiplicative Gaussian noise: every moment of the discrete iterates, of the SMEs and of
the small-noise Heun scheme on them is closed-form, so the expectation of the Richardson
combination that ``verify`` estimates is known exactly) and Euler–Maruyama on geometric Brownian
motion (Kloeden & Platen (4.4.6) for both the scheme and the solution).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from scipy import stats

from smetool import ExactReference, verify, weak_error
from smetool.algorithms.sgd_scalar import Power, ScalarQuadraticSGD
from smetool.exact import gbm_em_moments, gbm_moment

SEEDS = range(50)
LRS = (1 / 4, 1 / 8)
HORIZON = 1.0
TESTS = {"x^2": Power(2), "x^3": Power(3)}
POWERS = {"x^2": 2, "x^3": 3}
FALSE_FAILURE = 1e-3  # per mode


def check_calibrated(z: np.ndarray, what: str) -> None:
    """``z`` (seeds, combinations): each column's ``Σ z²`` inside the two-sided χ²_M band and its
    mean inside the normal band, at a per-mode false-failure probability of 1e-3."""
    M, n = z.shape
    a = FALSE_FAILURE / (2 * n)
    lo, hi = stats.chi2.ppf(a / 2, M), stats.chi2.ppf(1 - a / 2, M)
    q = stats.norm.ppf(1 - a / 2)
    ss = (z**2).sum(axis=0)
    means = z.mean(axis=0) * math.sqrt(M)
    assert np.all(np.isfinite(z)), what
    assert np.all((lo <= ss) & (ss <= hi)), (
        f"{what}: Σz² over {M} seeds = {np.round(ss, 1).tolist()}, outside [{lo:.1f}, {hi:.1f}]")
    assert np.all(np.abs(means) <= q), (
        f"{what}: √M·mean(z) = {np.round(means, 2).tolist()}, beyond ±{q:.2f}")


def _verify_truth(alg: ScalarQuadraticSGD, lr: float, m: int, steps_per_lr: int,
                  extrapolate: bool) -> float:
    moments = alg.exact_moments()
    sme = moments.heun_extrapolated(m, lr, HORIZON, 1, lr / steps_per_lr, 3 if extrapolate else 1)
    return moments.discrete(m, lr, HORIZON) - sme


MODES = {
    "no control variates": dict(variance_reduction="none", extrapolate=False),
    "tangent control variate": dict(variance_reduction="tangent", extrapolate=False),
    "quadratic control variates": dict(variance_reduction="quadratic", extrapolate=False),
    "quadratic, extrapolated": dict(variance_reduction="quadratic", extrapolate=True),
    "no control variates, extrapolated": dict(variance_reduction="none", extrapolate=True),
    "quadratic, extrapolated, chunks of 37": dict(variance_reduction="quadratic",
                                                  extrapolate=True, chunk_size=37),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_verify_is_calibrated(mode):
    """``verify``'s weak errors (discrete − SME, each side with its control variates and the SME
    extrapolated or not) against their exact expectation, 50 seeds of 120 paths."""
    alg = ScalarQuadraticSGD(curvature=1.0, noise=1.0)
    options = dict(MODES[mode])
    options.setdefault("chunk_size", 120)
    z = _verify_z(alg, options)
    check_calibrated(z, mode)


def _verify_z(alg: ScalarQuadraticSGD, options: dict) -> np.ndarray:
    r = 4
    truth = np.array([[_verify_truth(alg, lr, POWERS[name], r, options["extrapolate"])
                       for lr in LRS] for name in TESTS])
    rows = []
    for seed in SEEDS:
        result = verify(alg, LRS, 120, horizon=HORIZON, order=1, test_functions=TESTS,
                        steps_per_lr=r, controls=False, seed=seed, progress=False, **options)
        t = result.weak_errors
        rows.append(((t.errors[:, -1].numpy() - truth) / t.stderrs[:, -1].numpy()).ravel())
    return np.array(rows)


def test_verify_is_calibrated_on_an_executor():
    """The same, every chunk on a thread pool (chunks of 40: three per learning rate)."""
    alg = ScalarQuadraticSGD(curvature=1.0, noise=1.0)
    with ThreadPoolExecutor(2) as pool:
        z = _verify_z(alg, dict(variance_reduction="quadratic", extrapolate=True, chunk_size=40,
                                executor=pool))
    check_calibrated(z, "on an executor")


# ------------------------------------------------------------------ weak_error's own modes
MU, SIGMA, X0 = -0.5, 0.6, 1.0
STEPS = (1 / 4, 1 / 8)


class _EM:
    """Euler–Maruyama for GBM ``dX = μX dt + σX dW`` on [0, 1]; with ``exact`` the exact solution
    from the same increments (``X_1 = X0 exp((μ − σ²/2) + σ W_1)``), for common random numbers."""

    def __init__(self, h: float, exact: bool = False):
        self.h, self.exact = h, exact

    def __call__(self, n, generator, *, antithetic=False):
        x = torch.full((n, 1), X0, dtype=torch.float64)
        w = torch.zeros(n, 1, dtype=torch.float64)
        for _ in range(round(1 / self.h)):
            dw = math.sqrt(self.h) * torch.randn(n, 1, generator=generator, dtype=torch.float64)
            dw = -dw if antithetic else dw
            x = x + MU * x * self.h + SIGMA * x * dw
            w = w + dw
        if self.exact:
            x = X0 * torch.exp((MU - 0.5 * SIGMA**2) + SIGMA * w)
        return x.unsqueeze(0)


GBM_TESTS = {"x": Power(1), "x^2": Power(2)}


def _gbm_truth(h: float) -> np.ndarray:
    em = gbm_em_moments(MU, SIGMA, X0, h, round(1 / h))
    return np.array([em[p - 1] - gbm_moment(MU, SIGMA, X0, 1.0, p) for p in (1, 2)])


@pytest.mark.parametrize("mode", ["independent", "antithetic", "common random numbers"])
def test_weak_error_is_calibrated(mode):
    """``weak_error`` of Euler–Maruyama on GBM: against exact expectations (plain, antithetic
    pairs) and against the exact solution on the same Brownian path (CRN), 50 seeds of 200."""
    truth = np.stack([_gbm_truth(h) for h in STEPS], axis=1)  # (K, L)
    rows = []
    for seed in SEEDS:
        if mode == "common random numbers":
            table = weak_error(lambda h: _EM(h, exact=True), lambda h: _EM(h), GBM_TESTS, 200,
                               steps=STEPS, common_random_numbers=True, seed=seed, progress=False)
        else:
            exact = ExactReference({"x": gbm_moment(MU, SIGMA, X0, 1.0, 1),
                                    "x^2": gbm_moment(MU, SIGMA, X0, 1.0, 2)})
            table = weak_error(exact, lambda h: _EM(h), GBM_TESTS, 200, steps=STEPS,
                               antithetic=mode == "antithetic", seed=seed, progress=False)
        rows.append(((table.errors[:, -1].numpy() - truth) / table.stderrs[:, -1].numpy()).ravel())
    check_calibrated(np.array(rows), mode)


def test_a_mis_stated_standard_error_fails_the_calibration():
    """The check itself has power: the standard errors of a right estimator divided by 1.5 fail
    it (Σz² ≈ 2.25 M), while the right ones pass (the independent mode above)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, 4))
    check_calibrated(z, "standard normal")
    with pytest.raises(AssertionError, match="outside"):
        check_calibrated(1.5 * z, "standard errors too small by 1.5")
    with pytest.raises(AssertionError, match="mean"):
        check_calibrated(0.9 * z + 0.7, "biased by 0.7 SE, spread 0.9")
