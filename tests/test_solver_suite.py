"""The standing solver suite: time-dependent, non-symmetric and parameterised problems for every
solver and every noise kind it declares, against exact references.

The problems come from :mod:`smetool.exact.sde_problems` (SciML's SDEProblemLibrary problems with
analytic solutions, and time-dependent, non-symmetric and parameterised ones for the noise kinds
the ports lack). Three kinds of evidence:

1. **Weak orders without sampling.** On an *affine* problem (drift affine in ``x``, diffusion
   independent of ``x``) one step of any of the schemes is ``Y ↦ F Y + c + G ΔW``; ``F, c, G`` are
   read off the solver's own ``step`` by probing it with unit states and increments (and checked
   to be affine), and the scheme's mean and covariance follow exactly from
   ``m ↦ F m + c``, ``C ↦ F C Fᵀ + h G Gᵀ``. On a *linear* problem a step is ``Y ↦ G Y`` with a
   random matrix ``G`` polynomial in the increments; ``E G`` and ``E G⊗G`` are exact sums over
   every outcome of three-point increments (and of Platen's two-point Lévy variables), which match
   the Gaussian moments to the degree these products need (numerics references §4; conftest).
   The errors against the closed-form SDE moments are then deterministic; every local slope
   ``log₂(e(h)/e(h/2))`` on the step range must be within 0.1 of the solver's declared
   ``weak_order_for(kind)`` and the last within 0.05 (the validation page's rule). The declared
   orders are read from the solvers, so docs, code and tests cannot drift apart.
2. **Strong orders by Monte Carlo** on time-dependent problems whose solution is a function of
   ``W_T`` (one Brownian path per sample, shared by every step size): the 99 % interval of the
   fitted slope must contain the declared ``strong_order_for(kind)`` and exclude the neighbouring
   order.
3. **Gradients through ``solve``** with respect to drift, diffusion and initial-state parameters,
   against central finite differences on the same random numbers, for every solver × noise kind.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smetool import EulerMaruyama, Milstein, PlatenWeak2, SmallNoiseHeun, solve
from smetool.exact import (
    additive_problem,
    rotation_problem,
    sciml_additive,
    sciml_additive_system,
    time_changed_noncommutative,
    time_dependent_gbm,
)
from smetool.sde import NoiseKind

F64 = torch.float64
SOLVERS = {"euler": EulerMaruyama(), "milstein": Milstein(), "platen": PlatenWeak2(),
           "heun": SmallNoiseHeun()}


def local_slopes(hs, errs):
    """``log(e_i/e_{i+1}) / log(h_i/h_{i+1})`` for exact (non-random) errors."""
    return [math.log(abs(errs[i] / errs[i + 1])) / math.log(hs[i] / hs[i + 1])
            for i in range(len(hs) - 1)]


def assert_exact_order(hs, errs, order, label):
    """Exact errors ``(len(hs), n_observables)``: no observable converges slower than ``order``
    (every local slope above ``order − 0.1``), and at least one converges at ``order`` (every local
    slope within 0.1 of it, the last within 0.05) — the declared order holds and is sharp. A sign
    change within a column fails (a vanishing leading constant says nothing about the order)."""
    errs = np.asarray(errs).reshape(len(hs), -1)
    slopes = []
    for j in range(errs.shape[1]):
        col = errs[:, j]
        assert np.all(np.sign(col) == np.sign(col[0])), (label, j, col)
        slopes.append(local_slopes(hs, col))
    shown = (label, [[round(v, 3) for v in s] for s in slopes])
    assert all(min(s) > order - 0.1 for s in slopes), shown
    assert any(max(abs(v - order) for v in s) < 0.1 and abs(s[-1] - order) < 0.05
               for s in slopes), shown
    return slopes


# ---------------------------------------------------------------------------------------------
# 1. Exact scheme moments on affine problems


def affine_step_map(solver, sde, t, h, D, M, noise_cov=None):
    """``(F, c, G)`` of one step ``Y ↦ F Y + c + G ξ`` read off ``solver.step`` at time ``t``.

    ``ξ`` is the Brownian increment ``ΔW (M,)``, or for SAMPLED noise the draw ``ζ (D,)`` (then
    ``sde`` is a probe whose ``sample_noise`` returns the rows of a table, see
    :func:`sampled_probe`). Rows probed: ``(0, 0)``, ``(e_i, 0)``, ``(0, e_j)`` and, to check that
    the step is affine (no ``x·ξ`` terms, nothing quadratic in ``ξ``), ``(e_i, e_j)`` and
    ``(0, 2e_j)``.
    """
    K = M if noise_cov is None else D
    X = [torch.zeros(D, dtype=F64)] + list(torch.eye(D, dtype=F64)) + [torch.zeros(D, dtype=F64)] * K
    Z = [torch.zeros(K, dtype=F64)] * (1 + D) + list(torch.eye(K, dtype=F64))
    for i in range(D):
        for j in range(K):
            X.append(torch.eye(D, dtype=F64)[i])
            Z.append(torch.eye(K, dtype=F64)[j])
    for j in range(K):
        X.append(torch.zeros(D, dtype=F64))
        Z.append(2 * torch.eye(K, dtype=F64)[j])
    X, Z = torch.stack(X), torch.stack(Z)
    if noise_cov is None:
        out = solver.step(sde, t, X, h, Z, torch.Generator().manual_seed(0))
    else:
        sde.table = Z / math.sqrt(h)  # the step adds √h ζ
        out = solver.step(sde, t, X, h, None, torch.Generator().manual_seed(0))
    out = out.numpy()
    c = out[0]
    F = (out[1:D + 1] - c).T
    G = (out[D + 1:D + 1 + K] - c).T
    pred = c + X.numpy() @ F.T + Z.numpy() @ G.T
    np.testing.assert_allclose(out, pred, rtol=0, atol=1e-12 * max(1.0, np.abs(out).max()))
    return F, c, G


class SampledProbe:
    """A SAMPLED-noise SDE with ``problem``'s drift whose ``sample_noise`` returns ``table``."""

    noise_kind = NoiseKind.SAMPLED
    noise_dim = None

    def __init__(self, drift):
        self.drift = drift
        self.table = None

    def sample_noise(self, t, x, generator):
        return self.table.to(x)


def affine_scheme_moments(solver, problem, h, n):
    """Exact mean ``(D,)`` and covariance ``(D, D)`` of ``n`` steps of ``solver`` from ``t = 0``."""
    D, kind = problem.dim, problem.noise_kind
    m, C = np.array(problem.x0), np.zeros((D, D))
    sde, cov = problem.sde, None
    if kind is NoiseKind.SAMPLED:
        # ζ has covariance Σ(t) = BBᵀ/(1+t): read it off the same problem in the COVARIANCE layout.
        sde = SampledProbe(problem.sde.drift)
        cov = additive_problem(noise_kind="covariance")
    for k in range(n):
        t = k * h
        if cov is None:
            F, c, G = affine_step_map(solver, sde, t, h, D, problem.noise_dim)
            Q = h * G @ G.T
        else:
            F, c, G = affine_step_map(solver, sde, t, h, D, D, noise_cov=True)
            S = cov.sde.diffusion(t, torch.zeros(1, D, dtype=F64))[0].numpy()
            Q = h * G @ S @ G.T  # G acts on the added noise √h ζ
        m, C = F @ m + c, F @ C @ F.T + Q
    return m, C


# Quantities compared: means "m1", variances "v1" and covariances "c12" (the variance is what a
# first-order noise term gets wrong; in a second moment the mean's error can hide it). Each has a
# non-zero leading error constant on its problem (a vanishing one would show as a sign change).
AFFINE_PROBLEMS = {
    # The default additive problem (full 2 × 2 matrix B) in each layout; the SAMPLED layout's ζ
    # has the covariance of the COVARIANCE layout with the same (default) arguments.
    "additive": (lambda: additive_problem(noise_kind="additive"), ("m1", "v1", "c12")),
    "general": (lambda: additive_problem(noise_kind="general"), ("m1", "v1", "c12")),
    "covariance": (lambda: additive_problem(noise_kind="covariance"), ("m1", "v1", "c12")),
    "sampled": (lambda: additive_problem(noise_kind="sampled"), ("m1", "v1", "c12")),
    "sciml_additive": (sciml_additive, ("m1", "v1")),
    "sciml_additive_system": (sciml_additive_system, ("m1", "v1", "v4")),
}
HS_AFFINE = [2.0**-k for k in range(3, 8)]


def exact_gaussian_moments(problem, t):
    """Mean and covariance of an additive problem at ``t`` from its observables."""
    D = problem.dim
    m = np.array([problem.observable(f"x{i + 1}").expectation(t) for i in range(D)])
    C = np.diag([problem.observable(f"x{i + 1}^2").expectation(t) - m[i] ** 2 for i in range(D)])
    if D > 1:
        C[0, 1] = C[1, 0] = problem.observable("x1*x2").expectation(t) - m[0] * m[1]
    return m, C


def _pick(m, C, name):
    if name[0] == "m":
        return m[int(name[1:]) - 1]
    if name[0] == "v":
        return C[int(name[1:]) - 1, int(name[1:]) - 1]
    return C[int(name[1]) - 1, int(name[2]) - 1]


def _affine_errors(solver, problem, names, hs, T=1.0):
    m_ref, C_ref = exact_gaussian_moments(problem, T)
    errs = []
    for h in hs:
        m, C = affine_scheme_moments(solver, problem, h, round(T / h))
        errs.append([_pick(m, C, nm) - _pick(m_ref, C_ref, nm) for nm in names])
    return np.array(errs)


@pytest.mark.parametrize("case", list(AFFINE_PROBLEMS))
@pytest.mark.parametrize("name", list(SOLVERS))
def test_weak_order_on_time_dependent_affine_problems_exact(name, case):
    """The additive problem with time-dependent noise in every layout, and the SciML additive
    ports: exact weak errors of the mean and second moments, slopes = the declared order.

    Platen's and Heun's additive step needs the trapezoidal ½(b(t) + b(t+h)) ΔW for order 2; with
    b(t) ΔW (before the fix) their variance slopes were 1.04, 1.02, 1.01, 1.005."""
    solver = SOLVERS[name]
    make, names = AFFINE_PROBLEMS[case]
    problem = make()
    if problem.noise_kind not in solver.noise_kinds:
        pytest.skip(f"{name} does not declare {problem.noise_kind.value} noise")
    order = solver.weak_order_for(problem.noise_kind)
    errs = _affine_errors(solver, problem, names, HS_AFFINE)
    assert_exact_order(HS_AFFINE, errs, order, (name, case, names))


def test_affine_probe_reproduces_the_issue_numbers():
    """The repro of issue 18: Var X_1 of Platen on the scalar time-dependent additive problem,
    h = 2^-3, 2^-4, 2^-5: 9.6e-7, 2.4e-7, 5.8e-8 (it was 5.70e-5, 2.78e-5, 1.37e-5 with b(t) ΔW)."""
    problem = additive_problem(B=[[0.05]], beta=[0.5], x0=[1.0])
    var = problem.observable("x1^2").expectation(1.0) - problem.observable("x1").expectation(1.0) ** 2
    errs = []
    for h in (2.0**-3, 2.0**-4, 2.0**-5):
        _, C = affine_scheme_moments(PlatenWeak2(), problem, h, round(1 / h))
        errs.append(C[0, 0] - var)
    np.testing.assert_allclose(errs, [9.62e-7, 2.35e-7, 5.80e-8], rtol=5e-3)


# ---------------------------------------------------------------------------------------------
# 3. Gradients through solve() against finite differences


def _gbm(p):
    return time_dependent_gbm(mu=p["a"], mu_t=p["b"], sigma=p["c"], sigma_t=p["d"])


def _gbm_cov(p):
    return time_dependent_gbm(mu=p["a"], mu_t=p["b"], sigma=p["c"], sigma_t=p["d"], dim=2,
                              noise_kind="covariance")


def _rotation(p):
    return rotation_problem(beta=p["a"], beta_t=p["b"], lam=p["c"], lam_t=p["d"])


def _additive(kind):
    return lambda p: additive_problem(B=p["B"], beta=p["beta"], noise_kind=kind)


def _noncommutative(p):
    return time_changed_noncommutative(c=p["a"], c_t=p["b"])


# noise kind -> (problem from parameters, parameter values): every parameter enters the drift or
# the diffusion, and each kind's diffusion depends on time and (where the kind allows) on x.
GRADIENT_CASES = {
    "diagonal": (_gbm, {"a": 0.4, "b": -0.3, "c": 0.5, "d": 0.3}),
    "scalar": (_rotation, {"a": 0.8, "b": 0.4, "c": 0.2, "d": -0.3}),
    "additive": (_additive("additive"), {"B": [[0.3, 0.1], [-0.2, 0.25]], "beta": [0.5, -0.3]}),
    "general": (_noncommutative, {"a": 1.0, "b": 0.5}),
    "general_additive": (_additive("general"), {"B": [[0.3, 0.1], [-0.2, 0.25]],
                                                "beta": [0.5, -0.3]}),
    # diag(σ(t)² x_i²) with x_1 = x_2: equal eigenvalues, where differentiating eigh gives NaN.
    "covariance": (_gbm_cov, {"a": 0.4, "b": -0.3, "c": 0.5, "d": 0.3}),
    "covariance_additive": (_additive("covariance"), {"B": [[0.3, 0.1], [-0.2, 0.25]],
                                                      "beta": [0.5, -0.3]}),
    "sampled": (_additive("sampled"), {"B": [[0.3, 0.1], [-0.2, 0.25]], "beta": [0.5, -0.3]}),
}


def _loss(solver, make, params, x0, seed=5):
    problem = make(params)
    x = x0.unsqueeze(0).expand(16, -1) if x0.ndim == 1 else x0
    sol = solve(problem.sde, x, (0.0, 1.0), dt=0.125, method=solver, generator=seed)
    y = sol.final
    return (y * y).mean() + y[:, 0].mean()  # non-linear in the state


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
@pytest.mark.parametrize("name", list(SOLVERS))
def test_gradients_through_solve_match_finite_differences(name, case):
    """Autograd gradients of a path functional with respect to every drift and diffusion
    parameter and to ``x0`` equal central differences (step 1e-6) on the same random numbers.

    Before the fix, Milstein left the gradient of a diffusion parameter at None on diagonal noise
    (and dropped ∂σ/∂x from the gradient of x0); COVARIANCE noise with repeated eigenvalues gave
    NaN through eigh."""
    solver = SOLVERS[name]
    make, values = GRADIENT_CASES[case]
    kind = make(values).noise_kind
    if kind not in solver.noise_kinds:
        pytest.skip(f"{name} does not declare {kind.value} noise")
    params = {k: torch.tensor(v, dtype=F64, requires_grad=True) for k, v in values.items()}
    x0 = torch.tensor(make(values).x0, dtype=F64).requires_grad_(True)
    loss = _loss(solver, make, params, x0)
    loss.backward()
    for key, p in [*params.items(), ("x0", x0)]:
        assert p.grad is not None, (name, case, key)
        fd = torch.zeros_like(p)
        for idx in np.ndindex(*p.shape):
            def shifted(delta):
                with torch.no_grad():
                    q = {k: v.detach().clone() for k, v in params.items()}
                    x = x0.detach().clone()
                    target = x if key == "x0" else q[key]
                    target[idx] += delta
                    return float(_loss(solver, make, q, x))
            fd[idx] = (shifted(1e-6) - shifted(-1e-6)) / 2e-6
        torch.testing.assert_close(p.grad, fd, rtol=1e-6, atol=1e-8, msg=lambda m: f"{name} {case} {key}: {m}")


def test_no_graph_is_built_when_nothing_requires_grad():
    """Milstein's derivative needs autograd, but a Monte-Carlo run without parameters must not
    return (or carry from step to step) a graph."""
    problem = time_dependent_gbm()
    y = solve(problem.sde, problem.initial_state(8), (0.0, 1.0), dt=0.25, method=Milstein(),
              generator=0).final
    assert not y.requires_grad
    sigma = torch.tensor(0.5, dtype=F64, requires_grad=True)
    with torch.no_grad():
        y = solve(time_dependent_gbm(sigma=sigma).sde, problem.initial_state(8), (0.0, 1.0),
                  dt=0.25, method=Milstein(), generator=0).final
    assert not y.requires_grad


def test_second_derivatives_through_a_covariance_root_are_refused():
    """The root's backward uses the eigenvectors as constants: a second derivative through it
    would be silently wrong, so building one is refused with a message saying what to do."""
    from smetool import psd_factor

    s = torch.tensor(0.7, dtype=F64, requires_grad=True)
    F = psd_factor(s**2 * torch.eye(2, dtype=F64) + torch.diag(torch.tensor([0.0, 0.3], dtype=F64)))
    (g,) = torch.autograd.grad(F.sum(), s, retain_graph=True)
    assert float(g) == pytest.approx(2 * 0.7 * (1 / (2 * 0.7) + 1 / (2 * math.sqrt(0.79))))
    with pytest.raises(RuntimeError, match=r"psd_factor supports first derivatives only.*"
                                           r"noise_kind='general'"):
        torch.autograd.grad(F.sum(), s, create_graph=True)


# ---------------------------------------------------------------------------------------------
# Platen's componentwise branch for diagonal and scalar noise


def _nonlinear_diagonal(t, x):
    return (0.4 + 0.2 * torch.sin(x + t)) * (1 + 0.3 * t)  # σ_i(t, x_i)


def _nonlinear_scalar(t, x):
    return torch.stack([0.3 + 0.1 * x[:, 1] ** 2, torch.sin(x[:, 0] + t) / 3,
                        0.2 * x[:, 0] * x[:, 2]], dim=1)  # one column, non-symmetric Jacobian


def _drift3(t, x):
    return -x + 0.5 * torch.sin(x.roll(1, dims=1)) * (1 + t)


@pytest.mark.parametrize("kind", ["diagonal", "scalar"])
def test_platen_componentwise_branch_is_the_general_scheme(kind):
    """For diagonal and scalar noise the U-terms of (15.1.3) vanish identically; the componentwise
    step equals the general matrix step on the same increments (to rounding), while evaluating
    the diffusion twice per step instead of building 4M + 1 matrices (D = 3)."""
    from smetool import FunctionSDE

    g = _nonlinear_diagonal if kind == "diagonal" else _nonlinear_scalar
    as_matrix = torch.diag_embed if kind == "diagonal" else (lambda v: v.unsqueeze(-1))
    calls = []

    def counted(t, x):
        calls.append(tuple(x.shape))
        return g(t, x)

    fast = FunctionSDE(_drift3, counted, noise_kind=kind)
    general = FunctionSDE(_drift3, lambda t, x: as_matrix(g(t, x)), noise_kind="general",
                          noise_dim=3 if kind == "diagonal" else 1)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50, 3, generator=gen, dtype=F64)
    dW = 0.3 * torch.randn(50, 3 if kind == "diagonal" else 1, generator=gen, dtype=F64)
    for t in (0.0, 0.7):
        a = PlatenWeak2().step(fast, t, x, 0.1, dW, torch.Generator().manual_seed(0))
        b = PlatenWeak2().step(general, t, x, 0.1, dW, torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    assert calls == [(50, 3), (100, 3)] * 2
