"""SignSGD plug-in (Compagnoni et al., ICLR 2025): every move is ±lr, the step's mean and
covariance are the exact erf expressions and the SME's coefficients, the separable-noise contract
holds draw for draw, the negative controls (SGD drift, noise-free sign flow) are rejected, and —
under ``-m slow`` — the default run decides order 1 with power."""

from __future__ import annotations

import math

import pytest
import torch

from smetool import verify
from smetool.algorithms.registry import get_plugin
from smetool.algorithms.signsgd import SignGDFlow, SignSGD
from smetool.citation import citation
from smetool.models import NoisyQuadratic

F64 = torch.float64


def test_every_move_is_plus_or_minus_lr_and_step_is_step_with_a_draw():
    algo = SignSGD.default()
    x = algo.initial_state(64)
    lr = 1 / 16
    moved = algo.step(x, lr, torch.Generator().manual_seed(2))
    assert torch.equal((moved - x).abs(), torch.full_like(x, lr))
    z = algo.draw(64, lr, torch.Generator().manual_seed(2), dtype=F64, device=x.device)
    assert torch.equal(algo.step_with(x, lr, z), moved)


def test_mean_and_covariance_of_a_step_are_the_erf_formulas_and_the_sme_coefficients():
    algo = SignSGD.default(noise_std=0.4)
    x0 = torch.tensor([[0.25, -0.1]], dtype=F64)
    P, lr = 400_000, 0.05
    steps = algo.step(x0.expand(P, 2), lr, torch.Generator().manual_seed(5))
    mean, cov = algo.mean_step(x0, lr)[0], algo.step_covariance(x0, lr)[0]
    se = steps.std(dim=0) / math.sqrt(P)
    # 5 SE per component: false-failure probability < 2e-6
    assert ((steps.mean(dim=0) - mean).abs() < 5 * se).all()
    # covariance entries of ±lr moves: SE ≤ lr²/√P; 6 SE, probability < 1e-8
    assert torch.allclose(torch.cov(steps.T), cov, atol=6 * lr * lr / math.sqrt(P))
    sde = algo.sme(lr)
    assert torch.allclose(sde.drift(0.0, x0), (mean - x0[0]) / lr, rtol=1e-13)
    B = sde.diffusion(0.0, x0)[0]
    assert torch.allclose(lr * (B @ B.T), cov, rtol=1e-12)  # lr · Σ̄ = Cov of one step
    dW = torch.randn(1, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert torch.allclose(sde.diffusion_product(0.0, x0, dW)[0], B @ dW[0], rtol=1e-13)


def test_the_noise_scale_of_a_saturated_sign_stays_positive_and_differentiable():
    algo = SignSGD.default(noise_std=0.1)
    x = torch.tensor([[0.4, 0.2], [0.0, 0.0]], dtype=F64)  # ∇f/(√2σ) = (6.4, 2.8) and 0
    B = algo.sme(0.1).diffusion(0.0, x)
    m = torch.erf(algo.problem.gradient(x) / (math.sqrt(2) * 0.1))
    assert float(1 - m[0, 0] ** 2) == 0.0  # the naive formula loses the scale entirely
    assert bool((torch.diagonal(B, dim1=1, dim2=2) > 0).all())  # the erfc form keeps it
    _, jvp = torch.func.jvp(lambda y: algo.sme(0.1).drift(0.0, y), (x,), (torch.ones_like(x),))
    assert bool(torch.isfinite(jvp).all())


def test_noise_must_be_diagonal_and_positive():
    H = [[2.0, 0.5], [0.5, 1.0]]
    with pytest.raises(ValueError, match="must be diag\\(σ\\) with σ > 0"):
        SignSGD(NoisyQuadratic(H, [0.0, 0.0], [[0.3, 0.1], [0.0, 0.3]]), [1.0, 1.0])
    with pytest.raises(ValueError, match="must be diag\\(σ\\) with σ > 0"):
        SignSGD(NoisyQuadratic(H, [0.0, 0.0], [[0.3, 0.0], [0.0, 0.0]]), [1.0, 1.0])
    with pytest.raises(ValueError, match="signsgd: `order` must be 1; got 2"):
        SignSGD.default().sme(0.1, 2)


@pytest.mark.parametrize("index", [0, 1], ids=["sgd-drift", "sign-flow"])
def test_negative_controls_are_rejected(index, with_sme):
    algo = SignSGD.default()
    control = algo.negative_controls(0.1, 1)[index]
    assert control.slope == 0.0
    if index == 1:
        assert isinstance(control.sde, SignGDFlow)
    wrong = with_sme(algo, lambda lr: algo.negative_controls(lr, 1)[index].sde)
    result = verify(wrong, [1 / 16, 1 / 32, 1 / 64], 3_000, horizon=0.75, steps_per_lr=2,
                    seed=0, progress=False)
    for name, verdict in result.verdicts.items():  # an O(1) drift error: an O(1) term
        assert verdict.failed and "an O(1) term" in verdict.reasons[0], (name, verdict)


@pytest.mark.slow
def test_default_verification_decides_order_one_with_power(decisive):
    spec = get_plugin("signsgd")
    result = verify(spec.build(), spec.lrs, spec.n_paths, horizon=spec.horizon,
                    steps_per_lr=spec.steps_per_lr, method=spec.method, seed=0, progress=False)
    assert decisive(result) == []


def test_a_reduced_verification_contains_order_one():
    # The fast variant of the slow test: a fifth of the paths and the three largest lrs. With
    # fewer points the series test has less power; no test function may fail (a wrong drift
    # fails every one, see above).
    spec = get_plugin("signsgd")
    result = verify(spec.build(), spec.lrs[:3], 30_000, horizon=spec.horizon,
                    steps_per_lr=spec.steps_per_lr, seed=0, progress=False)
    assert not any(v.failed for v in result.verdicts.values()), result.table()


def test_citations_name_the_signsgd_papers():
    assert [r.key for r in get_plugin("signsgd").references] == [
        "compagnoni2025adaptive", "bernstein2018signsgd"]
    assert "Adaptive Methods through the Lens of {SDE}s" in citation(plugin="signsgd")
