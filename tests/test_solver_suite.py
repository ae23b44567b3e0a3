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
   The errors against the closed-form SDE moments are then deterministic; judged on the last two
   local slopes ``log₂(e(h)/e(h/2))``, no observable may converge slower than the solver's
   declared ``weak_order_for(kind)`` and one must converge at it (last slope within 0.05, the
   validation page's rule; see :func:`assert_exact_order`). The declared orders are read from the
   solvers, so docs, code and tests cannot drift apart.
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

from smetool import (
    EulerMaruyama,
    FunctionSDE,
    Milstein,
    PlatenWeak2,
    SmallNoiseHeun,
    fit_order,
    solve,
)
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
    """Exact errors ``(len(hs), n_observables)`` against a declared ``order``, judged on the last
    two local slopes (the asymptotic end of the range):

    * no observable converges slower — both above ``order − 0.1``, the last above ``order − 0.05``;
    * at least one converges at ``order`` — both within 0.1 of it, the last within 0.05 — so the
      declared order is sharp, not just a lower bound.

    An observable whose error changes sign on the range has a leading constant near zero and says
    nothing about the order; it is left out (if every observable is, the second check fails).
    """
    errs = np.asarray(errs).reshape(len(hs), -1)
    slopes = [local_slopes(hs, col) for col in errs.T if np.all(np.sign(col) == np.sign(col[0]))]
    shown = (label, [[round(v, 3) for v in s] for s in slopes])
    assert all(min(s[-2:]) > order - 0.1 and s[-1] > order - 0.05 for s in slopes), shown
    assert any(max(abs(v - order) for v in s[-2:]) < 0.1 and abs(s[-1] - order) < 0.05
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
# 1b. Exact scheme moments on linear problems: E G and E G⊗G by enumeration


def _outcomes(m, h, levy):
    """Every outcome of three-point ΔW (3^m) and, when ``levy``, of the two-point V_{rj}, r > j."""
    values = torch.tensor([-math.sqrt(3 * h), 0.0, math.sqrt(3 * h)], dtype=F64)
    probs = torch.tensor([1 / 6, 2 / 3, 1 / 6], dtype=F64)
    idx = torch.cartesian_prod(*[torch.arange(3)] * m).reshape(-1, m)
    dW, w = values[idx], probs[idx].prod(dim=1)
    n_pairs = m * (m - 1) // 2
    if not levy or n_pairs == 0:
        return dW, None, w
    signs = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0], dtype=F64)] * n_pairs).reshape(-1, n_pairs)
    n_dw, n_v = dW.shape[0], signs.shape[0]
    V = torch.zeros(n_dw * n_v, m, m, dtype=F64)
    rows, cols = torch.tril_indices(m, m, -1)
    V[:, rows, cols] = signs.repeat(n_dw, 1) * h
    V = V - V.transpose(1, 2) - h * torch.eye(m, dtype=F64)
    return dW.repeat_interleave(n_v, dim=0), V, w.repeat_interleave(n_v) / n_v


def linear_scheme_moments(solver, problem, h, n, monkeypatch):
    """``E Y_n``, ``E Y_n Y_nᵀ`` (and ``E Y_n³`` for D = 1) of ``n`` steps of ``solver``, exactly.

    A step of a linear SDE is ``Y ↦ G Y``; ``G`` is read off ``solver.step`` at the basis vectors
    for every outcome. The moments of ``G`` needed here have degree ≤ 4 in each increment, where
    three-point and Gaussian increments agree (degree 6 for the cubic moment: that one is the
    exact moment of the scheme driven by three-point increments, themselves of weak order 2).
    """
    import smetool.solvers.platen as platen_module

    D, M = problem.dim, problem.noise_dim
    dW, V, w = _outcomes(M, h, levy=problem.noise_kind is NoiseKind.GENERAL)
    K = w.numel()
    if V is not None:
        monkeypatch.setattr(platen_module, "two_point_levy",
                            lambda batch, m, hh, generator, dtype, device: V.repeat(D, 1, 1))
    basis = torch.eye(D, dtype=F64).repeat_interleave(K, dim=0)  # rows: e_i for each outcome
    m1, m2 = np.array(problem.x0), np.outer(problem.x0, problem.x0).reshape(-1)
    m3 = problem.x0[0] ** 3
    for k in range(n):
        out = solver.step(problem.sde, k * h, basis, h, dW.repeat(D, 1), None)
        G = out.reshape(D, K, D).permute(1, 2, 0)  # G[outcome, :, i] = step(e_i)
        m1 = (w[:, None, None] * G).sum(0).numpy() @ m1
        kron = torch.einsum("pij,pkl->pikjl", G, G).reshape(K, D * D, D * D)
        m2 = (w[:, None, None] * kron).sum(0).numpy() @ m2
        if D == 1:
            m3 = float((w * G[:, 0, 0] ** 3).sum()) * m3
    return m1, m2.reshape(D, D), m3


LINEAR_PROBLEMS = {
    # noise kind: (time-dependent problem, observables compared)
    "diagonal": (lambda: time_dependent_gbm(), ("x", "x^2", "x^3")),
    "scalar": (lambda: rotation_problem(), ("x1", "x1^2", "x1*x2", "x2^2")),
    "general": (lambda: time_changed_noncommutative(), ("x1", "x2", "x1^2", "x1*x2", "x2^2")),
}
# The cubic moment of GBM and the clock-changed problem are preasymptotic above h = 2^-4.
HS_LINEAR = [2.0**-k for k in range(4, 9)]


def _linear_value(m1, m2, m3, name):
    table = {"x": m1[0], "x^2": m2[0, 0], "x^3": m3}
    if len(m1) > 1:
        table.update({"x1": m1[0], "x2": m1[1], "x1^2": m2[0, 0], "x1*x2": m2[0, 1],
                      "x2^2": m2[1, 1]})
    return table[name]


@pytest.mark.parametrize("kind", list(LINEAR_PROBLEMS))
@pytest.mark.parametrize("name", list(SOLVERS))
def test_weak_order_on_time_dependent_linear_problems_exact(name, kind, monkeypatch):
    """GBM with time-dependent rates (diagonal), the rotation with a non-symmetric Jacobian and
    a time-dependent rate (scalar), the non-commutative problem on a time-dependent clock
    (general): exact weak errors, slopes = the declared order."""
    solver = SOLVERS[name]
    make, names = LINEAR_PROBLEMS[kind]
    problem = make()
    if problem.noise_kind not in solver.noise_kinds:
        pytest.skip(f"{name} does not declare {kind} noise")
    T = problem.t_span[1]
    errs = []
    for h in HS_LINEAR:
        moments = linear_scheme_moments(solver, problem, h, round(T / h), monkeypatch)
        errs.append([_linear_value(*moments, nm) - problem.observable(nm).expectation(T)
                     for nm in names])
    assert_exact_order(HS_LINEAR, errs, solver.weak_order_for(problem.noise_kind),
                       (name, kind, names))


# ---------------------------------------------------------------------------------------------
# 2. Strong orders by Monte Carlo, one Brownian path per sample shared by every step size


def _rotation_as_general(problem):
    sde = problem.sde
    return FunctionSDE(sde.drift, lambda t, x: sde.diffusion(t, x).unsqueeze(-1),
                       noise_kind="general", noise_dim=1)


# Time-dependent OU with time-dependent additive noise, dX = (−θX + c0 + c1 t) dt + b0(1 + b1 t) dW.
# Its solution is not a function of W_T (the library's additive problem is, and on it Heun's
# trapezoidal step happens to be exact to O(h²) because e^{∫a}·b is constant in s there), so the
# exact X_T is sampled jointly with the fine increments: on each fine interval, ΔW and
# J = ∫ e^{−θ(T−s)} b(s) dW_s are jointly Gaussian with moments from 8-point Gauss–Legendre.
_OU = {"theta": 1.0, "b0": 0.5, "b1": 1.0, "c0": 0.3, "c1": -0.6, "x0": 1.0}


def _ou_sde():
    p = _OU
    return FunctionSDE(
        lambda t, x: -p["theta"] * x + p["c0"] + p["c1"] * t,
        lambda t, x: torch.full((1, 1), p["b0"] * (1 + p["b1"] * t), dtype=x.dtype, device=x.device),
        noise_kind="additive")


def _ou_paths(P, n_fine, T, gen):
    p = _OU
    d = T / n_fine
    z, wq = np.polynomial.legendre.leggauss(8)
    s = (np.arange(n_fine)[:, None] + (z[None] + 1) / 2) * d
    f = np.exp(-p["theta"] * (T - s)) * p["b0"] * (1 + p["b1"] * s)
    m1, m2 = (f * wq).sum(1) * d / 2, (f * f * wq).sum(1) * d / 2
    resid = np.sqrt(np.clip(m2 - m1**2 / d, 0.0, None))
    Z = torch.randn(2, n_fine, P, 1, generator=gen, dtype=F64)
    dW = Z[0] * math.sqrt(d)
    J = torch.as_tensor(m1 / d)[:, None, None] * dW + torch.as_tensor(resid)[:, None, None] * Z[1]
    e = math.exp(-p["theta"] * T)
    det = (e * p["x0"] + p["c0"] * (1 - e) / p["theta"]
           + p["c1"] * (T / p["theta"] - (1 - e) / p["theta"] ** 2))
    return dW, det + J.sum(0)


# noise kind -> (SDE, x0 (D,), M, sampler of (fine increments, exact X_T)); every drift is
# time-dependent; x0 and the paths are shared by all solvers of a kind.
def _path_case(problem, sde=None):
    def paths(P, n_fine, T, gen):
        dW = torch.randn(n_fine, P, problem.noise_dim, generator=gen, dtype=F64) * math.sqrt(T / n_fine)
        return dW, problem.solution(T, dW.sum(0))
    return (sde or problem.sde), problem.x0, problem.noise_dim, paths


STRONG_CASES = {
    "diagonal": lambda: _path_case(time_dependent_gbm(sigma_t=0.0)),
    "scalar": lambda: _path_case(rotation_problem(beta_t=0.0)),
    "general": lambda: _path_case(rotation_problem(beta_t=0.0),
                                  _rotation_as_general(rotation_problem(beta_t=0.0))),
    "covariance": lambda: _path_case(time_dependent_gbm(sigma_t=0.0, noise_kind="covariance")),
    "additive": lambda: (_ou_sde(), (_OU["x0"],), 1, _ou_paths),
}
STRONG_LEVELS = range(3, 8)  # h = 2^-3 … 2^-7 on [0, 1]


@pytest.mark.parametrize("kind", list(STRONG_CASES))
@pytest.mark.parametrize("name", ["euler", "milstein", "heun"])
def test_strong_order_on_time_dependent_problems(name, kind, tabulated_increments):
    """``E|Y_T − X_T|`` on 2000 paths at h = 2^-3 … 2^-7, the coarse increments summed from the
    finest ones (one path per sample); the 99 % interval of the fitted slope (lack-of-fit
    inflated; the levels share paths) must contain ``strong_order_for(kind)`` and exclude the
    neighbouring order (½ ↔ 1). Seed 100 for every case, chosen before the first run. Measured:
    Euler–Maruyama and Heun 0.50–0.54, Milstein 0.96–0.99, all three 1.00 on additive noise."""
    solver = SOLVERS[name]
    sde, x0, M, paths = STRONG_CASES[kind]()
    if sde.noise_kind not in solver.noise_kinds:
        pytest.skip(f"{name} does not declare {kind} noise")
    order = solver.strong_order_for(sde.noise_kind)
    P, T, n_fine = 2000, 1.0, 2 ** max(STRONG_LEVELS)
    fine, exact = paths(P, n_fine, T, torch.Generator().manual_seed(100))
    hs, errs, ses = [], [], []
    for level in STRONG_LEVELS:
        n = 2**level
        table = fine.reshape(n, n_fine // n, P, M).sum(1)
        inc = tabulated_increments(table, 0.0, T / n, gaussian=True, matched_moments=10**9)
        y = solve(sde, torch.tensor(x0, dtype=F64).repeat(P, 1), (0.0, T), dt=T / n,
                  method=solver, increments=inc).final
        d = (y - exact).norm(dim=1)
        hs.append(T / n)
        errs.append(float(d.mean()))
        ses.append(float(d.std()) / math.sqrt(P))
    fit = fit_order(hs, errs, ses, confidence=0.99)
    neighbour = 1.0 if order == 0.5 else 0.5
    assert fit.contains(order) and not fit.contains(neighbour), (name, kind, repr(fit))


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
        torch.testing.assert_close(p.grad, fd, rtol=1e-6, atol=1e-8,
                                   msg=lambda m, key=key: f"{name} {case} {key}: {m}")


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
