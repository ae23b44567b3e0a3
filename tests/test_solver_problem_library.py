"""The problem library itself (:mod:`smetool.exact.sde_problems`), checked without sampling.

A reference that is wrong would make every solver test built on it meaningless, so each problem is
checked three independent ways:

1. the coded drift and diffusion against the claimed solution ``X_t = Φ(t, W_t)`` by Itô's formula
   (``b = ∂_tΦ + ½ Σ_j ∂²_{W_j}Φ``, ``σ = ∂_WΦ``, derivatives by autograd), at several points;
2. the closed-form expectations against ``E g(Φ(t, W_t))`` by Gauss–Hermite quadrature over
   ``W_t``, or, for the linear problems without a path solution, against the moment ODE
   ``Ṁ = A M + M Aᵀ + Σ_j B_j M B_jᵀ`` built from the *coded* coefficients (a central difference in
   ``t`` of the closed form);
3. the ported SciML problems against the formulas printed in SDEProblemLibrary.jl.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

from smetool.exact import (
    LibraryProblem,
    additive_problem,
    gaussian_expectation,
    rotation_problem,
    sciml_additive,
    sciml_additive_system,
    sciml_cubic,
    sciml_linear,
    sciml_linear_2d,
    sciml_wave,
    time_changed_noncommutative,
    time_dependent_gbm,
)
from smetool.noise import diffusion_matrix

F64 = torch.float64

WITH_SOLUTION = {
    "sciml_linear": sciml_linear,
    "sciml_linear_2d": sciml_linear_2d,
    "sciml_cubic": sciml_cubic,
    "sciml_wave": sciml_wave,
    "sciml_additive": sciml_additive,
    "sciml_additive_system": sciml_additive_system,
    "additive": lambda: additive_problem(noise_kind="additive"),
    "additive_general": lambda: additive_problem(noise_kind="general"),
    "additive_covariance": lambda: additive_problem(noise_kind="covariance"),
    "gbm_time_dependent_drift": lambda: time_dependent_gbm(sigma_t=0.0),
    "gbm_covariance": lambda: time_dependent_gbm(sigma_t=0.0, noise_kind="covariance"),
    "rotation_time_dependent_drift": lambda: rotation_problem(beta_t=0.0),
}


def _ito_residuals(problem: LibraryProblem, t: float, w: torch.Tensor):
    """``b(t, Φ) − (∂_tΦ + ½ΔΦ)`` and ``σ(t, Φ) − ∂_WΦ`` at one point ``(t, w)``, ``w (M,)``."""
    M = w.numel()

    def phi(tt, ww):
        return problem.solution(tt, ww.unsqueeze(0))[0]

    x = phi(t, w)
    eps = 1e-6  # ∂_t by a central difference: the solutions take t as a float
    dt = (phi(t + eps, w) - phi(t - eps, w)) / (2 * eps)
    jac = torch.autograd.functional.jacobian(lambda ww: phi(t, ww), w)  # (D, M)
    hess = torch.autograd.functional.hessian
    lap = torch.stack([sum(hess(lambda ww: phi(t, ww)[d], w)[j, j] for j in range(M))
                       for d in range(x.numel())])
    drift = problem.sde.drift(t, x.unsqueeze(0))[0]
    g = problem.sde.diffusion(t, x.unsqueeze(0))
    sigma = diffusion_matrix(problem.sde, g, 1)[0]  # (D, M)
    return drift - (dt + 0.5 * lap), sigma - jac


@pytest.mark.parametrize("name", list(WITH_SOLUTION))
def test_coded_sde_satisfies_itos_formula_for_its_solution(name):
    problem = WITH_SOLUTION[name]()
    M = problem.noise_dim
    gen = torch.Generator().manual_seed(0)
    for t in (0.1, 0.5, 1.0):
        w = 0.7 * torch.randn(M, generator=gen, dtype=F64)
        r_drift, r_sigma = _ito_residuals(problem, t, w)
        assert float(r_drift.abs().max()) < 1e-7, (name, t, r_drift)
        assert float(r_sigma.abs().max()) < 1e-10, (name, t, r_sigma)


@pytest.mark.parametrize("name", list(WITH_SOLUTION))
def test_expectations_equal_the_law_of_the_solution(name):
    """``E g(Φ(t, W_t))`` over ``W_t ~ N(0, tI)``: by Gauss–Hermite quadrature over ``W_t^1`` when
    the observables depend on one Brownian component (one noise, or diagonal noise read on
    component 0); otherwise the solution is affine in ``W`` and mean and covariance follow from
    ``Φ(t, 0)`` and ``∂_WΦ``."""
    problem = WITH_SOLUTION[name]()
    M = problem.noise_dim
    one_noise = M == 1 or problem.noise_kind.value == "diagonal"
    for t in (0.5, 1.0):
        if not one_noise:
            mean = problem.solution(t, torch.zeros(1, M, dtype=F64))[0]
            J = torch.autograd.functional.jacobian(
                lambda w: problem.solution(t, w.unsqueeze(0))[0], torch.zeros(M, dtype=F64))
            second = (t * J @ J.T + torch.outer(mean, mean)).numpy()
            mean = mean.numpy()
        for obs in problem.observables:
            if one_noise:
                def f(w):
                    W = torch.zeros(len(w), M, dtype=F64)
                    W[:, 0] = torch.as_tensor(w)
                    return obs.g(problem.solution(t, W)).numpy()
                ref = gaussian_expectation(f, 0.0, t)
            elif obs.name == "x1*x2":
                ref = second[0, 1]
            elif obs.name.endswith("^2"):
                i = int(obs.name[1:-2]) - 1
                ref = second[i, i]
            else:
                ref = mean[int(obs.name[1:]) - 1]
            assert obs.expectation(t) == pytest.approx(float(ref), rel=1e-11, abs=1e-13), \
                (name, obs, t)


def _linear_coefficients(problem, t):
    """``A (D, D)`` and ``B_j (M, D, D)`` of a linear SDE, read off its coded drift and diffusion."""
    D = problem.dim
    E = torch.eye(D, dtype=F64)
    A = problem.sde.drift(t, E).T
    g = diffusion_matrix(problem.sde, problem.sde.diffusion(t, E), D)  # [i (basis), d, j]
    Bs = g.permute(2, 1, 0)  # B_j[d, i]
    return A.numpy(), Bs.numpy()


LINEAR_NO_PATH = {
    "gbm": lambda: time_dependent_gbm(),
    "gbm_2d": lambda: time_dependent_gbm(dim=2),
    "rotation": lambda: rotation_problem(),
    "noncommutative": lambda: time_changed_noncommutative(),
}


@pytest.mark.parametrize("name", list(LINEAR_NO_PATH))
def test_linear_moments_solve_the_moment_ode_of_the_coded_sde(name):
    """``ṁ = A(t) m`` and ``Ṁ = A M + M Aᵀ + Σ_j B_j M B_jᵀ`` with ``A, B_j`` from the code, on the
    closed-form moments (central differences, step 1e-5)."""
    problem = LINEAR_NO_PATH[name]()
    D = problem.dim
    names1 = ["x"] if D == 1 else ["x1", "x2"]

    def moments(t):
        if problem.dim == 1 or name == "gbm_2d":
            m1 = problem.observable("x").expectation(t)
            m2 = problem.observable("x^2").expectation(t)
            m = np.full(D, m1)
            M = np.full((D, D), m1 * m1)  # independent identical components
            np.fill_diagonal(M, m2)
            return m, M
        m = np.array([problem.observable(n).expectation(t) for n in names1])
        c = problem.observable("x1*x2").expectation(t)
        return m, np.array([[problem.observable("x1^2").expectation(t), c],
                            [c, problem.observable("x2^2").expectation(t)]])

    eps = 1e-5
    for t in (0.3, 0.8):
        A, Bs = _linear_coefficients(problem, t)
        m, M = moments(t)
        dm = (moments(t + eps)[0] - moments(t - eps)[0]) / (2 * eps)
        dM = (moments(t + eps)[1] - moments(t - eps)[1]) / (2 * eps)
        np.testing.assert_allclose(dm, A @ m, rtol=1e-7, atol=1e-8)
        rhs = A @ M + M @ A.T + sum(B @ M @ B.T for B in Bs)
        np.testing.assert_allclose(dM, rhs, rtol=1e-7, atol=1e-8)


def test_noncommutative_on_its_clock_is_the_published_problem():
    """At ``c = 1, c_t = 0`` the clock is ``t`` and ``E X_1² = e^{−t}`` (Debrabant & Rößler)."""
    problem = time_changed_noncommutative(1.0, 0.0)
    assert problem.observable("x1^2").expectation(0.7) == pytest.approx(math.exp(-0.7), rel=1e-12)
    assert problem.time_dependent is False
    assert time_changed_noncommutative().time_dependent is True


@pytest.mark.parametrize("make", [sciml_cubic, sciml_wave])
def test_gauss_hermite_expectations_match_adaptive_quadrature(make):
    problem = make()
    for obs in problem.observables:
        def integrand(w, t=1.0):
            x = problem.solution(t, torch.tensor([[w]], dtype=F64))
            return float(obs.g(x)[0]) * math.exp(-w * w / (2 * t)) / math.sqrt(2 * math.pi * t)
        ref, err = scipy.integrate.quad(integrand, -40, 40, epsabs=1e-14, epsrel=1e-13, limit=200)
        assert obs.expectation(1.0) == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_ported_problems_match_the_sciml_formulas():
    """The solutions printed in SDEProblemLibrary.jl, evaluated at a few (t, W)."""
    for t, w in ((0.3, -0.4), (1.0, 1.3)):
        W = torch.tensor([[w]], dtype=F64)
        lin = float(sciml_linear().solution(t, W)[0, 0])
        assert lin == pytest.approx(0.5 * math.exp(0.63155 * t + 0.87 * w), rel=1e-14)
        u0 = 0.5
        cubic = ((1 + u0) * math.exp(w) + u0 - 1) / ((1 + u0) * math.exp(w) + 1 - u0)
        assert float(sciml_cubic().solution(t, W)[0, 0]) == pytest.approx(cubic, rel=1e-14)
        assert float(sciml_wave().solution(t, W)[0, 0]) == pytest.approx(
            math.atan(0.1 * w + math.tan(1.0)), rel=1e-14)
        additive = 1.0 / math.sqrt(1 + t) + 0.05 * (t + 0.1 * w) / math.sqrt(1 + t)
        assert float(sciml_additive().solution(t, W)[0, 0]) == pytest.approx(additive, rel=1e-14)
    system = sciml_additive_system()
    assert system.dim == 4 and system.noise_dim == 4 and system.x0 == (1.0,) * 4
    b = system.sde.diffusion(0.0, torch.zeros(1, 4, dtype=F64))
    np.testing.assert_allclose(b.numpy(), np.diag([0.05, 0.025, 0.0125, 0.01115]), rtol=1e-14)
    assert sciml_linear_2d().dim == 8
    for p in (sciml_linear(), sciml_cubic(), sciml_wave(), sciml_additive(), system):
        assert p.t_span == (0.0, 1.0) and "SDEProblemLibrary" in p.source


def test_sampled_layout_draws_noise_with_the_covariance_of_the_others():
    """ζ = B z/√(1+t) with Rademacher z: its values are the 2^M sign patterns and its sample
    covariance is BBᵀ/(1+t) within 5 standard errors (false-failure probability < 1e-5 per entry;
    seed fixed)."""
    problem = additive_problem(noise_kind="sampled")
    cov = additive_problem(noise_kind="covariance").sde.diffusion(0.5, torch.zeros(1, 2, dtype=F64))[0]
    gen = torch.Generator().manual_seed(11)
    z = problem.sde.sample_noise(0.5, torch.zeros(200_000, 2, dtype=F64), gen)
    prods = z.unsqueeze(2) * z.unsqueeze(1)  # (P, 2, 2)
    est, se = prods.mean(0), prods.std(0) / math.sqrt(z.shape[0])
    assert bool(((est - cov).abs() <= 5 * se).all()), (est, cov, se)
    assert bool((z.mean(0).abs() <= 5 * z.std(0) / math.sqrt(z.shape[0])).all())
    assert z.unique(dim=0).shape[0] == 4


def test_parameters_may_be_tensors_that_require_grad():
    mu = torch.tensor(0.3, dtype=F64, requires_grad=True)
    problem = time_dependent_gbm(mu=mu)
    x = torch.ones(3, 1, dtype=F64)
    problem.sde.drift(0.5, x).sum().backward()
    assert float(mu.grad) == pytest.approx(3.0)
    assert problem.observable("x").expectation(1.0) == pytest.approx(math.exp(0.3 - 0.3))
    B = torch.tensor([[0.3, 0.1], [-0.2, 0.25]], dtype=F64, requires_grad=True)
    additive_problem(B=B).sde.diffusion(0.0, x.repeat(1, 2)).sum().backward()
    assert B.grad is not None


def test_bad_arguments_name_the_argument_and_the_value():
    with pytest.raises(ValueError, match=r"`noise_kind` must be 'diagonal' or 'covariance'; got 'scalar'"):
        time_dependent_gbm(noise_kind="scalar")
    with pytest.raises(ValueError, match=r"`noise_kind` must be additive, general, covariance or "
                                         r"sampled; got 'diagonal'"):
        additive_problem(noise_kind="diagonal")
    with pytest.raises(ValueError, match=r"`B` must be a \(D, M\) matrix; got shape \(3,\)"):
        additive_problem(B=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"`beta` and `x0` must have D = 2 entries"):
        additive_problem(beta=[1.0])
    with pytest.raises(ValueError, match=r"`x0` must be in \(-1, 1\); got 1.5"):
        sciml_cubic(1.5)
    with pytest.raises(ValueError, match=r"`c \+ c_t t` must stay positive"):
        time_changed_noncommutative(1.0, -2.0)
    with pytest.raises(ValueError, match=r"`n_paths` must be a positive integer; got 0"):
        sciml_linear().initial_state(0)
    with pytest.raises(KeyError, match=r"`name` must be one of x, x\^2, x\^3; got 'y'"):
        sciml_linear().observable("y")
    with pytest.raises(ValueError, match=r"`var` must be a finite number >= 0; got -1"):
        gaussian_expectation(np.cos, 0.0, -1.0)


def test_problem_objects_describe_themselves():
    p = additive_problem(noise_kind="covariance")
    d = p.to_dict()
    assert d["noise_kind"] == "covariance" and d["noise_dim"] == 2 and d["structure"] == "affine"
    assert d["strong_reference"] and d["time_dependent"]
    assert repr(p) == ("LibraryProblem('additive(covariance, D=2, M=2)', dim=2, "
                       "noise_kind='covariance', t_span=(0.0, 1.0))")
    assert p.initial_state(3).shape == (3, 2)
    assert additive_problem(noise_kind="sampled").solution is None
    assert rotation_problem().solution is None and rotation_problem(beta_t=0.0).solution is not None
