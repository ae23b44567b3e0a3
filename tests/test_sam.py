"""USAM and SAM plug-ins (Compagnoni et al., ICML 2023): the steps are SAM's, their means and
covariances are exact, the USAM SME's weak order 1 holds exactly (closed-form moments), the SMEs
resolve order 1 with power at the plug-ins' defaults, and the SGD SME (no ρ-term) is rejected."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gamma, hyp1f1

from smetool import verify
from smetool.algorithms.registry import get_plugin
from smetool.algorithms.sam import (
    DEFAULT_X0,
    SAM,
    USAM,
    USAMSME,
    default_problem,
    normalised_gaussian_mean,
)
from smetool.citation import citation
from smetool.exact import USAMMoments
from smetool.models import NoisyQuadratic

F64 = torch.float64


def _c_hyp(a: float) -> float:
    """``c(a) = Γ(2)/(√2 Γ(5/2)) ₁F₁(½; 5/2; −a²/2)`` (scipy), the reference of the closed form."""
    return gamma(2.0) / (math.sqrt(2.0) * gamma(2.5)) * hyp1f1(0.5, 2.5, -a * a / 2)


@pytest.mark.parametrize("a", [0.0, 1e-4, 0.3, 0.49999, 0.5, 0.50001, 1.0, 3.0, 12.0])
def test_normalised_gaussian_mean_is_the_confluent_hypergeometric_closed_form(a):
    sigma = 0.7
    mu = torch.tensor([[a * sigma * 0.6, -a * sigma * 0.8, 0.0]], dtype=F64)
    got = normalised_gaussian_mean(mu, sigma)
    expected = mu / sigma * _c_hyp(a)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_normalised_gaussian_mean_matches_monte_carlo_and_is_differentiable_at_zero():
    gen = torch.Generator().manual_seed(3)
    mu = torch.tensor([[0.4, -0.2, 0.9]], dtype=F64)
    g = mu + 0.5 * torch.randn(400_000, 3, generator=gen, dtype=F64)
    n = g / g.norm(dim=1, keepdim=True)
    # 5 SE per component: false-failure probability < 2e-6 for the three components together
    se = n.std(dim=0) / math.sqrt(n.shape[0])
    assert ((n.mean(dim=0) - normalised_gaussian_mean(mu, 0.5)[0]).abs() < 5 * se).all()
    zero = torch.zeros(2, 3, dtype=F64)
    _, jvp = torch.func.jvp(lambda m: normalised_gaussian_mean(m, 0.5), (zero,),
                            (torch.ones_like(zero),))
    # at μ = 0: E[g/‖g‖] ≈ (μ/σ) c(0), so the derivative is c(0)/σ per direction
    assert torch.allclose(jvp, torch.full_like(zero, _c_hyp(0.0) / 0.5), rtol=1e-12)


@pytest.mark.parametrize("cls", [USAM, SAM])
def test_step_is_sam_evaluating_the_same_minibatch_at_the_ascent_point(cls):
    algo = cls(default_problem(0.5), DEFAULT_X0, rho=0.7)
    x = algo.initial_state(5) + torch.randn(5, 3, generator=torch.Generator().manual_seed(1),
                                            dtype=F64)
    lr, gen = 0.1, torch.Generator().manual_seed(4)
    z = algo.draw(5, lr, torch.Generator().manual_seed(4), dtype=F64, device=x.device)
    H = algo.problem.hessian
    g = x @ H + 0.5 * z
    ascent = g if cls is USAM else g / g.norm(dim=1, keepdim=True)
    closed_form = x - lr * (g + 0.7 * ascent @ H)  # ∇f_γ(x + ρa) = g + ρ H a on the quadratic
    assert torch.allclose(algo.step(x, lr, gen), closed_form, rtol=1e-13, atol=1e-14)
    assert torch.allclose(algo.step_with(x, lr, z), closed_form, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("cls", [USAM, SAM])
def test_mean_step_is_the_exact_expectation_and_the_sme_drift(cls):
    algo = cls(default_problem(0.8), DEFAULT_X0, rho=0.5)
    x0 = torch.tensor([[0.3, -0.4, 0.2]], dtype=F64)
    P, lr = 400_000, 0.05
    x = x0.expand(P, 3)
    steps = algo.step(x, lr, torch.Generator().manual_seed(7))
    se = steps.std(dim=0) / math.sqrt(P)
    mean = algo.mean_step(x0, lr)[0]
    # 5 SE per component: false-failure probability < 2e-6
    assert ((steps.mean(dim=0) - mean).abs() < 5 * se).all()
    assert torch.allclose(algo.sme(lr).drift(0.0, x0), (mean - x0[0]) / lr, rtol=1e-12)
    if cls is USAM:
        cov = torch.cov(steps.T)
        exact = algo.step_covariance(x0, lr)[0]
        # the sample covariance's SE is about √(2/P) of its scale: 6 SE, probability < 1e-8
        assert torch.allclose(cov, exact, atol=6 * math.sqrt(2 / P) * float(exact.abs().max()))
    else:
        assert algo.step_covariance(x0, lr) is None


def test_rho_zero_is_sgd_and_sam_needs_three_isotropic_dimensions():
    p = default_problem(0.5)
    x = torch.tensor([[1.0, 2.0, -1.0]], dtype=F64)
    for cls in (USAM, SAM):
        assert torch.allclose(cls(p, DEFAULT_X0, 0.0).sme(0.1).drift(0.0, x), -p.gradient(x))
    aniso = NoisyQuadratic(p.hessian, p.minimiser, torch.diag(torch.tensor([0.5, 0.5, 0.4])))
    with pytest.raises(ValueError, match="needs D = 3 and an isotropic noise factor"):
        SAM(aniso, DEFAULT_X0, 0.5)
    with pytest.raises(ValueError, match="`rho` must be a finite non-negative number; got -1"):
        USAM(p, DEFAULT_X0, -1)
    with pytest.raises(ValueError, match="usam: `order` must be 1; got 2"):
        USAM(p, DEFAULT_X0, 0.5).sme(0.1, 2)


def test_usam_exact_moments_match_the_simulated_algorithm():
    algo = USAM(default_problem(0.5), DEFAULT_X0, rho=0.5)
    lr, K, P = 1 / 8, 4, 200_000
    x = algo.initial_state(P)
    gen = torch.Generator().manual_seed(11)
    for _ in range(K):
        x = algo.step(x, lr, gen)
    exact = algo.exact_moments().discrete_moments(algo.x0.numpy(), lr, K * lr)
    se = x.std(dim=0).numpy() / math.sqrt(P)
    # 5 SE per coordinate: false-failure probability < 2e-6
    assert np.all(np.abs(x.mean(dim=0).numpy() - exact.mean[0]) < 5 * se)
    cov = torch.cov(x.T).numpy()
    assert np.allclose(cov, exact.covariance[0], atol=6 * math.sqrt(2 / P) * np.abs(cov).max())


def test_usam_sme_has_exact_weak_order_one_and_the_sgd_sme_does_not_converge():
    algo = USAM(default_problem(0.5), DEFAULT_X0, rho=0.5)
    z0, lrs = algo.x0.numpy(), [2.0**-k for k in range(4, 12)]
    err = algo.exact_moments().weak_errors(z0, lrs, 0.5)
    for name in err.names:
        assert abs(err.ratios(name, 1)[-1] - 1.0) < 0.01, (name, err.ratios(name, 1))
    # The negative control: the SGD SME (ρ = 0) against the same USAM iterates.
    p = algo.problem
    sgd = USAMMoments(p.hessian, p.minimiser, p.noise_factor, rho=0.0)
    usam = algo.exact_moments()
    g = usam.test_functions()["x[0]"]
    wrong = [usam.discrete_moments(z0, h, 0.5).expectation(g)[0]
             - sgd.sme_moments(z0, h, 1, 0.5).expectation(g)[0] for h in lrs]
    slopes = np.log(np.abs(np.array(wrong[:-1]) / wrong[1:])) / np.log(2)
    assert abs(slopes[-1]) < 0.01 and abs(wrong[-1]) > 0.1  # an O(ρ) error that stays


@pytest.mark.parametrize("name", ["usam", "sam"])
def test_default_verification_decides_order_one_with_power(name, decisive):
    spec = get_plugin(name)
    result = verify(spec.build(), spec.lrs, spec.n_paths, horizon=spec.horizon,
                    steps_per_lr=spec.steps_per_lr, method=spec.method, seed=0, progress=False)
    assert decisive(result) == []


@pytest.mark.parametrize("name", ["usam", "sam"])
def test_the_sgd_sme_negative_control_is_rejected(name, with_sme):
    algo = get_plugin(name).build()
    (control,) = algo.negative_controls(0.1, 1)
    assert isinstance(control.sde, USAMSME) and control.sde.rho == 0.0 and control.slope == 0.0
    lrs = [1 / 16, 1 / 32, 1 / 64]
    wrong = with_sme(algo, lambda lr: algo.negative_controls(lr, 1)[0].sde)
    result = verify(wrong, lrs, 2_000, horizon=0.5, steps_per_lr=2, seed=0, progress=False)
    for name, verdict in result.verdicts.items():  # an O(ρ) error at every lr: an O(1) term
        assert verdict.failed and "an O(1) term" in verdict.reasons[0], (name, verdict)


def test_citations_name_the_sam_papers():
    for name in ("usam", "sam"):
        keys = [r.key for r in get_plugin(name).references]
        assert keys == ["compagnoni2023sam", "foret2021sam"]
        bib = citation(plugin=name)
        assert "An {SDE} for Modeling {SAM}" in bib and "Sharpness-Aware Minimization" in bib
