"""SDEs with a sampled drift (SampledDriftSDE): Euler–Maruyama's step keeps the moments of an
Euler–Maruyama step exactly, so it inherits its weak order 1; other solvers refuse such SDEs."""

from __future__ import annotations

import math

import pytest
import torch

import smetool
from smetool import SampledDriftSDE
from smetool.solvers import EulerMaruyama, Milstein, PlatenWeak2, SmallNoiseHeun, UnsupportedError

A, C, GAMMA = 1.5, 0.3, 2.0  # dX = −A X dt + √C dW; Cov b̂ = GAMMA · Cov ζ


class NoisyDriftOU(SampledDriftSDE):
    """OU whose drift −A x is seen through b̂ = −A x + √(GAMMA C) ξ and whose noise ζ = √C ρ
    (ξ, ρ independent Rademacher signs: symmetric, not Gaussian)."""

    drift_noise_ratio = GAMMA

    def sample_drift(self, t, x, generator):
        signs = torch.randint(0, 2, x.shape, generator=generator, dtype=x.dtype) * 2 - 1
        return -A * x + math.sqrt(GAMMA * C) * signs

    def sample_noise(self, t, x, generator):
        return math.sqrt(C) * (torch.randint(0, 2, x.shape, generator=generator, dtype=x.dtype) * 2 - 1)


def em_second_moment(x0: float, h: float, n: int) -> float:
    """``E X_n²`` of Euler–Maruyama for the OU above, exactly: ``m ← (1 − A h)² m + C h``."""
    m = x0 * x0
    for _ in range(n):
        m = (1 - A * h) ** 2 * m + C * h
    return m


def test_the_scheme_has_euler_maruyamas_moments_and_so_weak_order_1():
    """E X_T² of the sampled-drift scheme equals Euler–Maruyama's exact value at each h (|z| < 4.5
    per h, three h: P(false failure) < 2e-5, fixed seed), and Euler–Maruyama's exact error against
    the OU limit halves with h (local slopes → 1)."""
    x0, T, P = 1.0, 1.0, 40_000
    exact = x0 * x0 * math.exp(-2 * A * T) + C / (2 * A) * (1 - math.exp(-2 * A * T))
    for h in (0.1, 0.05, 0.025):
        sol = smetool.solve(NoisyDriftOU(), torch.full((P, 1), x0, dtype=torch.float64), (0.0, T), dt=h,
                            method=EulerMaruyama(), generator=7)
        sq = sol.final[:, 0] ** 2
        want = em_second_moment(x0, h, round(T / h))
        assert abs(float(sq.mean()) - want) < 4.5 * float(sq.std()) / math.sqrt(P)
    # Euler–Maruyama's own second-moment error, exactly, down to small h: order 1.
    hs = [0.1 / 2**k for k in range(8)]
    errors = [em_second_moment(x0, h, round(T / h)) - exact for h in hs]
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(len(hs) - 1)]
    assert slopes[-1] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("solver", [SmallNoiseHeun(), Milstein(), PlatenWeak2()])
def test_other_solvers_refuse_a_sampled_drift(solver):
    with pytest.raises(UnsupportedError, match="only gives unbiased drift estimates"):
        smetool.solve(NoisyDriftOU(), torch.ones(4, 1, dtype=torch.float64), (0.0, 1.0), dt=0.1,
                      method=solver, generator=0)


def test_a_step_larger_than_the_drift_allows_is_refused():
    with pytest.raises(ValueError, match=r"too large for its sampled drift .* take h ≤ 0.5"):
        smetool.solve(NoisyDriftOU(), torch.ones(4, 1, dtype=torch.float64), (0.0, 1.0), dt=1.0,
                      method=EulerMaruyama(), generator=0)


def test_negative_control_ignoring_the_drift_noise_is_detected():
    """The same scheme told γ = 0 (noise √h ζ on top of the noisy drift) carries γh²C too much
    variance per step: at h = 0.1 its E X_T² misses Euler–Maruyama's by about 27 SE (> 10 required)."""

    class Uncorrected(NoisyDriftOU):
        drift_noise_ratio = 0.0

    x0, T, P, h = 1.0, 1.0, 40_000, 0.1
    sol = smetool.solve(Uncorrected(), torch.full((P, 1), x0, dtype=torch.float64), (0.0, T), dt=h,
                        method=EulerMaruyama(), generator=7)
    sq = sol.final[:, 0] ** 2
    z = (float(sq.mean()) - em_second_moment(x0, h, round(T / h))) / (float(sq.std()) / math.sqrt(P))
    assert z > 10
