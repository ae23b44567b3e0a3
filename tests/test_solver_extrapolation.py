"""The SME solver's own error is removed with the solver's declared error expansion.

``verify`` solves the SME at ``h, 2h, 4h`` on one Brownian path and combines the levels with the
Richardson weights of the expansion ``c_p h^p + c_{p+1} h^{p+1} + …``, ``p`` the solver's weak
order for the SME's noise kind (the small-noise Heun scheme: ``p = 1`` for state-dependent noise,
whose error ``O(h² + ε h)`` has an ``O(h)`` term; ``p = 2`` for additive noise). Checked without
Monte Carlo on geometric Brownian motion, where every moment of the Heun scheme is closed-form
(:class:`~smetool.exact.scalar_sgd.ScalarQuadraticMoments`), and on the wiring of the producer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smetool import Increments, SmallNoiseHeun, solve, solve_coupled
from smetool.algorithms.sgd_scalar import ScalarQuadraticSGD
from smetool.exact.scalar_sgd import ScalarQuadraticMoments
from smetool.montecarlo import VarianceReduction
from smetool.sde import FunctionSDE, NoiseKind
from smetool.stats import richardson_weights
from smetool.verification.producers import CoupledSMEProducer

MOMENTS = ScalarQuadraticMoments(curvature=1.0, noise=1.0, x0=1.0)
STEPS = [1 / 32, 1 / 64, 1 / 128, 1 / 256]


def _combined(m: int, lr: float, h: float, order: int) -> float:
    """Three Heun levels combined with the weights for leading order ``order``, minus the exact
    SME moment."""
    w = richardson_weights(3, order)
    levels = [MOMENTS.heun(m, lr, 1.0, 2, h * 2**k) for k in range(3)]
    return float(np.dot(w, levels)) - MOMENTS.sme(m, lr, 1.0, 2)


def _slopes(errors: list[float]) -> np.ndarray:
    e = np.abs(np.asarray(errors))
    return np.log(e[:-1] / e[1:]) / np.log(2.0)


def test_the_heun_schemes_error_on_state_dependent_noise_has_a_first_order_term():
    """E X² of the Heun scheme on GBM (noise √lr s X): the error's local slopes tend to 1."""
    fine = [MOMENTS.heun(2, 0.25, 1.0, 2, h) - MOMENTS.sme(2, 0.25, 1.0, 2) for h in STEPS]
    assert abs(_slopes(fine)[-1] - 1.0) < 0.05


def test_the_declared_expansion_removes_both_terms_and_leaves_third_order():
    """Weights for the declared p = 1 leave O(h³) (slopes → 3); weights assuming p = 2 (the
    Heun scheme's order on additive noise) leave the O(h) term (slopes → 1)."""
    right = [_combined(2, 0.25, h, 1) for h in STEPS]
    wrong = [_combined(2, 0.25, h, 2) for h in STEPS]
    assert abs(_slopes(right)[-1] - 3.0) < 0.1
    assert abs(_slopes(wrong)[-1] - 1.0) < 0.1
    assert abs(right[-1]) < 1e-3 * abs(wrong[-1])


def test_the_solver_declares_the_orders_the_extrapolation_uses():
    heun = SmallNoiseHeun()
    assert heun.weak_order_for(NoiseKind.DIAGONAL) == 1.0
    assert heun.weak_order_for(NoiseKind.GENERAL) == 1.0
    assert heun.weak_order_for(NoiseKind.ADDITIVE) == 2.0


@pytest.mark.parametrize("vr", [VarianceReduction.NONE, VarianceReduction.QUADRATIC])
def test_the_producer_combines_its_levels_with_the_declared_order(vr):
    """The SME producer of ``verify`` returns the fine level, the 2h and 4h levels (each with its
    own tangent) and the scheme's declared order for the SME's noise kind."""
    alg = ScalarQuadraticSGD()
    sde = alg.sme(0.25, 2)
    producer = CoupledSMEProducer(alg, sde, SmallNoiseHeun(), 1.0, 0.25 / 8, torch.float64,
                                  torch.device("cpu"), vr, extrapolate=True, levels=3)
    sample = producer(16, torch.Generator().manual_seed(0))
    assert sample.solver_order == SmallNoiseHeun().weak_order_for(sde.noise_kind) == 1.0
    assert sample.extrapolate and len(sample.coarse) == 2
    assert np.allclose(sample.richardson_weights(), richardson_weights(3, 1.0))
    if vr is VarianceReduction.QUADRATIC:
        assert sample.tangent is not None and len(sample.coarse_tangents) == 2
    else:
        assert sample.tangent is None and not sample.coarse_tangents


def test_coupled_levels_are_the_scheme_on_summed_increments():
    """Level 2 (step 4h) of ``solve_coupled`` is the scheme at 4h driven by the sums of four fine
    increments: the same numbers as ``solve`` at 4h with those increments."""
    sde = FunctionSDE(lambda t, x: -x, lambda t, x: 0.3 * x, noise_kind="diagonal")
    x0 = torch.ones(5, 1, dtype=torch.float64)
    sol = solve_coupled(sde, x0, (0.0, 1.0), dt=1 / 16, method="heun",
                        generator=torch.Generator().manual_seed(3), levels=3)
    gen = torch.Generator().manual_seed(3)
    fine = torch.stack([torch.empty(5, 1, dtype=torch.float64).normal_(0.0, 0.25, generator=gen)
                        for _ in range(16)])  # the fine increments, drawn as the solver draws them
    summed = fine.reshape(4, 4, 5, 1).sum(1)

    class Given(Increments):
        name, gaussian, matched_moments = "given", True, 5

        def __init__(self, values):
            self.values, self.k = values, 0

        def sample(self, t0, t1, shape, generator, dtype, device):
            out = self.values[self.k]
            self.k += 1
            return out

    coarse = solve(sde, x0, (0.0, 1.0), dt=1 / 4, method="heun", increments=Given(summed),
                   generator=0).xs[-1]
    assert torch.allclose(sol.levels[2], coarse, rtol=1e-14, atol=1e-14)
    assert len(sol.levels) == 3


def test_levels_need_a_grid_the_coarsest_step_walks():
    sde = FunctionSDE(lambda t, x: -x, lambda t, x: 0.3 * x, noise_kind="diagonal")
    with pytest.raises(ValueError, match="multiple of 4 steps"):
        solve_coupled(sde, torch.ones(2, 1, dtype=torch.float64), (0.0, 1.0), dt=1 / 6,
                      method="heun", generator=torch.Generator().manual_seed(0), levels=3)


def test_every_level_of_the_extrapolation_carries_its_control_variates():
    """The Richardson combination subtracts every level's control variates: the extrapolated
    estimate keeps the variance reduction of the finest level alone (measured 1.05–20× of it on
    the dropout SME; with the coarse levels' control variates left out it falls to 0.02–0.24×,
    the extrapolated term then carrying the levels' raw fluctuation)."""
    from smetool import verify
    from smetool.algorithms.registry import plugins

    alg = plugins()["dropout"].build()
    kw = dict(horizon=0.2, order=2, steps_per_lr=4, controls=False, noise_modes=0, seed=0,
              progress=False)
    on = verify(alg, [0.05, 0.025], 200, extrapolate=True, **kw).weak_errors
    off = verify(alg, [0.05, 0.025], 200, extrapolate=False, **kw).weak_errors
    ratio = on.control_variate_factor[:, -1] / off.control_variate_factor[:, -1]
    assert bool((ratio > 0.5).all()), ratio
