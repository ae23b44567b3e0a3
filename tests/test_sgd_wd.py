"""SGD with weight decay on a scale-invariant loss (Li, Lyu & Arora, NeurIPS 2020): the model is
scale-invariant, the step's mean and covariance are exact, the exact norm dynamics of the SME
(deterministic ``‖W_t‖⁴``, equilibrium ``lr τ/(2λ)``) and of the pure-noise discrete algorithm are
right and give weak order 1 without Monte Carlo, the default run decides order 1 with power, and
the SME without weight decay is rejected."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smetool import solve, verify
from smetool.algorithms.registry import get_plugin
from smetool.algorithms.sgd_wd import SGDWeightDecay
from smetool.citation import citation
from smetool.exact import ScaleInvariantNorms
from smetool.models import NormalisedQuadratic

F64 = torch.float64


def test_the_loss_gradient_and_noise_are_scale_invariant():
    p = NormalisedQuadratic(torch.diag(torch.tensor([1.0, 0.0, -1.0])), [0.2, 0.0, 0.1], 0.3)
    w = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert torch.allclose(p.loss(2.5 * w), p.loss(w), rtol=1e-13)
    assert torch.allclose(p.gradient(2.5 * w), p.gradient(w) / 2.5, rtol=1e-12)
    assert torch.allclose((p.gradient(w) * w).sum(1), torch.zeros(6, dtype=F64), atol=1e-14)
    assert torch.allclose((p.gradient_noise(w, z) * w).sum(1), torch.zeros(6, dtype=F64), atol=1e-14)
    # the gradient is the autograd gradient of L
    wg = w.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(p.loss(wg).sum(), wg)
    assert torch.allclose(auto, p.gradient(w), rtol=1e-12)


@pytest.mark.parametrize("noise", ["gaussian", "sphere"])
def test_mean_and_covariance_of_a_step_are_exact_for_both_noise_laws(noise):
    algo = SGDWeightDecay.default(noise=noise, noise_std=0.5)
    w0 = torch.tensor([[0.6, -0.3, 0.5]], dtype=F64)
    P, lr = 400_000, 0.05
    steps = algo.step(w0.expand(P, 3), lr, torch.Generator().manual_seed(9))
    mean, cov = algo.mean_step(w0, lr)[0], algo.step_covariance(w0, lr)[0]
    se = steps.std(dim=0) / math.sqrt(P)
    # 5 SE per component: false-failure probability < 2e-6
    assert ((steps.mean(dim=0) - mean).abs() < 5 * se).all()
    scale = float(cov.abs().max())
    assert torch.allclose(torch.cov(steps.T), cov, atol=6 * math.sqrt(2 / P) * scale)
    B = algo.sme(lr).diffusion(0.0, w0)[0]
    assert torch.allclose(lr * B @ B.T, cov, rtol=1e-12, atol=1e-15)
    dW = torch.randn(1, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.allclose(algo.sme(lr).diffusion_product(0.0, w0, dW)[0], B @ dW[0], atol=1e-15)


def test_the_sme_norm_is_the_closed_form_for_any_scale_invariant_loss():
    # With a loss (A ≠ 0) the direction is random but ‖W_t‖ is not (Itô with ∇L ⊥ W and tangent
    # noise): the solver's ‖W_T‖⁴ converges to the closed form on every path (its spread falls
    # like h for Platen's scheme) and in the mean.
    algo = SGDWeightDecay.default(weight_decay=0.5, noise_std=0.5)
    lr, T, P = 1 / 8, 1.0, 1_000
    exact = ScaleInvariantNorms(float(algo.w0 @ algo.w0), 0.5, 0.5, 3, 0.0).sme_norm4(lr, T)
    spread = []
    for dt in (1 / 64, 1 / 256):
        sol = solve(algo.sme(lr), algo.initial_state(P), (0.0, T), dt=dt, method="platen",
                    generator=torch.Generator().manual_seed(4))
        norm4 = (sol.xs[-1] * sol.xs[-1]).sum(dim=1) ** 2
        spread.append(float(norm4.std()) / exact)
    # 5 SE (false-failure probability < 6e-7); Platen's weak error O(h²) is far below it
    assert abs(float(norm4.mean()) - exact) < 5 * float(norm4.std()) / math.sqrt(P)
    assert spread[1] < 0.005 and spread[0] / spread[1] > 3
    m = ScaleInvariantNorms(1.0, 0.5, 0.5, 3, 0.0)
    assert math.isclose(m.equilibrium_norm4(lr), lr * 0.25 * 2 / (2 * 0.5))
    assert math.isclose(float(m.sme_norm4(lr, 60.0)), m.equilibrium_norm4(lr), rel_tol=1e-12)


def test_pure_noise_discrete_moments_are_exact():
    # Sphere noise with A = 0, b = 0: the norm is deterministic path by path, E(e·ŵ)² exact.
    p = NormalisedQuadratic(torch.zeros(3, 3), [0.0, 0.0, 0.0], 0.5, noise="sphere")
    w0 = torch.tensor([math.sqrt(0.5), math.sqrt(0.5), 0.0], dtype=F64)
    algo = SGDWeightDecay(p, w0, 0.5)
    lr, K, P = 0.25, 4, 200_000
    w = algo.initial_state(P)
    gen = torch.Generator().manual_seed(6)
    for _ in range(K):
        w = algo.step(w, lr, gen)
    exact = ScaleInvariantNorms(1.0, 0.5, 0.5, 3, 0.5).discrete_moments(lr, K)
    norm_sq = (w * w).sum(dim=1)
    assert torch.allclose(norm_sq, torch.full_like(norm_sq, exact["norm_sq"]), rtol=1e-12)
    cos = w[:, 0] ** 2 / norm_sq
    # 5 SE: false-failure probability < 6e-7
    assert abs(float(cos.mean()) - exact["cos_sq"]) < 5 * float(cos.std()) / math.sqrt(P)


def test_exact_weak_errors_of_the_norm_have_order_one():
    m = ScaleInvariantNorms(1.0, 0.5, 0.5, 3, 0.5)
    lrs = [2.0**-k for k in range(3, 12)]
    err = m.weak_errors(lrs, 1.0)
    slopes = np.log(np.abs(err["norm_sq"][:-1] / err["norm_sq"][1:])) / np.log(2)
    assert abs(slopes[-1] - 1.0) < 0.01
    # the direction's first-order terms cancel (its clock depends on the norm as in the SME)
    cos = np.log(np.abs(err["cos_sq"][:-1] / err["cos_sq"][1:])) / np.log(2)
    assert abs(cos[-1] - 2.0) < 0.01
    with pytest.raises(ValueError, match="`horizon` \\(1\\) must be a whole number of steps of `lr`"):
        m.weak_errors([0.3], 1.0)


def test_default_verification_decides_order_one_with_power(decisive):
    spec = get_plugin("sgd-wd")
    result = verify(spec.build(), spec.lrs, spec.n_paths, horizon=spec.horizon,
                    steps_per_lr=spec.steps_per_lr, method=spec.method, seed=0, progress=False)
    assert decisive(result) == []


def test_the_sme_without_weight_decay_is_rejected(with_sme):
    algo = get_plugin("sgd-wd").build()
    (control,) = algo.negative_controls(0.1, 1)
    assert control.sde.weight_decay == 0.0 and control.slope == 0.0
    wrong = with_sme(algo, lambda lr: algo.negative_controls(lr, 1)[0].sde)
    result = verify(wrong, [1 / 16, 1 / 32, 1 / 64], 1_000, horizon=1.0, steps_per_lr=2, seed=0,
                    progress=False)
    for name, verdict in result.verdicts.items():  # an O(1) drift error: an O(1) term
        assert verdict.failed and "an O(1) term" in verdict.reasons[0], (name, verdict)


def test_bad_input_and_citations():
    p = NormalisedQuadratic(torch.eye(3), [0.0, 0.0, 0.0], 0.5)
    with pytest.raises(ValueError, match="`w0` must be non-zero"):
        SGDWeightDecay(p, [0.0, 0.0, 0.0], 0.1)
    with pytest.raises(ValueError, match="`noise` must be one of gaussian, sphere; got 'uniform'"):
        NormalisedQuadratic(torch.eye(3), [0.0, 0.0, 0.0], 0.5, noise="uniform")
    with pytest.raises(ValueError, match="`cos0_sq` must be in \\[0, 1\\]; got 2.0"):
        ScaleInvariantNorms(1.0, 0.1, 0.5, 3, 2.0)
    assert [r.key for r in get_plugin("sgd-wd").references] == ["li2020intrinsic", "li2019sme"]
    assert "The Intrinsic Learning Rate" in citation(plugin="sgd-wd")
