"""Exact (non-random) tests of the schemes: enumeration of discrete increments, no Monte Carlo.

Three kinds of evidence, each without sampling error:

1. *Global moments*: Euler–Maruyama with two-point increments and Platen's scheme with three-point
   increments have finitely many outcomes over ``N`` steps; averaging all ``2^N`` / ``3^N`` paths
   with their probabilities reproduces the closed-form discrete moments of
   :mod:`smetool.exact.sde_references` to rounding. (Two- and three-point laws are the 2- and 3-node
   Gauss–Hermite rules, so these are also the Gaussian-increment moments.)
2. *Local weak error*: one step from ``x`` with every outcome of ``ΔW`` (three-point) and of the
   two-point variables ``V`` enumerated, compared with the exact ``E g(X_h)`` (closed form, or the
   Itô–Taylor expansion to ``O(h³)`` computed symbolically). A weak order-2 scheme must have local
   error ``O(h³)``; Euler–Maruyama, the negative control, has ``O(h²)``.
3. *Global weak order without sampling*: on a linear SDE a step is ``Y ↦ G Y`` with a random
   matrix ``G``, so ``E Y_N^{⊗2} = (E G⊗G)^N x0^{⊗2}`` exactly; the weak error of Platen's scheme on the
   non-commutative problem then has slope 2 in ``h`` to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import smetool.solvers.platen as platen_module
from smetool import EulerMaruyama, FunctionSDE, PlatenWeak2, solve
from smetool.exact import (
    NONCOMMUTATIVE_A,
    NONCOMMUTATIVE_B,
    gbm_em_moments,
    gbm_moment,
    gbm_platen_moments,
    gbm_sde,
    linear_sde,
    linear_sde_moment_tensor,
    linear_sde_moments,
    ou_em_moments,
    ou_moments,
    ou_sde,
    sinh_expectation,
    sinh_moments,
    sinh_sde,
    sinh_test_function,
)
from smetool.noise import diffusion_matrix

F64 = torch.float64


def _slope(hs, errs):
    """Least-squares slope of log|err| on log h (exact data: no weights needed)."""
    return float(np.polyfit(np.log(hs), np.log(np.abs(errs)), 1)[0])


# ---------------------------------------------------------------------------------------------
# 1. Global moments by enumeration


@pytest.mark.parametrize("n_steps", [1, 4, 10])
def test_em_gbm_two_point_enumeration_is_exact(n_steps, device, tabulated_increments,
                                               enumerate_outcomes):
    mu, sigma, x0, h = 0.8, 0.6, 1.3, 2.0**-3
    table, w = enumerate_outcomes(h, n_steps, 1, "two_point", device=device)
    inc = tabulated_increments(table, 0.0, h, matched_moments=3)
    x = torch.full((w.numel(), 1), x0, dtype=F64, device=device)
    sol = solve(gbm_sde(mu, sigma), x, (0.0, n_steps * h), dt=h, increments=inc,
                method=EulerMaruyama())
    y = sol.final[:, 0]
    m1, m2 = gbm_em_moments(mu, sigma, x0, h, n_steps)
    assert float((w * y).sum()) == pytest.approx(m1, rel=1e-13)
    assert float((w * y * y).sum()) == pytest.approx(m2, rel=1e-13)


def test_em_ou_multivariate_two_point_enumeration_is_exact(tabulated_increments, enumerate_outcomes):
    A = np.array([[1.0, 0.4], [-0.3, 0.7]])
    B = np.array([[0.5, 0.2, 0.0], [0.1, 0.0, 0.3]])  # D = 2, M = 3: a (D, M) additive diffusion
    mean, x0, h, n = np.array([0.2, -0.1]), np.array([1.0, -2.0]), 0.25, 3
    table, w = enumerate_outcomes(h, n, 3, "two_point")  # 2^9 outcomes
    inc = tabulated_increments(table, 0.0, h, matched_moments=3)
    x = torch.tensor(x0, dtype=F64).repeat(w.numel(), 1)
    y = solve(ou_sde(A, B, mean), x, (0.0, n * h), dt=h, increments=inc).final.numpy()
    wn = w.numpy()
    m = wn @ y
    cov = (y - m).T @ (wn[:, None] * (y - m))
    ref = ou_em_moments(A, B, x0, h, n, mean)
    np.testing.assert_allclose(m, ref.mean, rtol=0, atol=1e-14)
    np.testing.assert_allclose(cov, ref.cov, rtol=0, atol=1e-14)


@pytest.mark.parametrize("n_steps", [1, 3, 6])
def test_platen_gbm_three_point_enumeration_is_exact(n_steps, device, tabulated_increments,
                                                     enumerate_outcomes):
    mu, sigma, x0, h = 0.9, 0.7, 1.2, 2.0**-2
    table, w = enumerate_outcomes(h, n_steps, 1, "three_point", device=device)
    inc = tabulated_increments(table, 0.0, h, matched_moments=5)
    x = torch.full((w.numel(), 1), x0, dtype=F64, device=device)
    y = solve(gbm_sde(mu, sigma), x, (0.0, n_steps * h), dt=h, increments=inc,
              method=PlatenWeak2(), generator=0).final[:, 0]
    m1, m2 = gbm_platen_moments(mu, sigma, x0, h, n_steps)
    assert float((w * y).sum()) == pytest.approx(m1, rel=1e-13)
    assert float((w * y * y).sum()) == pytest.approx(m2, rel=1e-13)


def test_exact_global_orders_on_gbm():
    """EM and Platen on GBM, exact discrete moments (tied to the code by the enumerations above)."""
    mu, sigma, x0, T = 1.0, 0.5, 1.0, 1.0
    hs = 2.0 ** -np.arange(4, 9)
    for k, p_em, p_platen in ((0, 1, 2), (1, 1, 2)):
        em = [gbm_em_moments(mu, sigma, x0, h, round(T / h))[k] for h in hs]
        pl = [gbm_platen_moments(mu, sigma, x0, h, round(T / h))[k] for h in hs]
        ref = gbm_moment(mu, sigma, x0, T, k + 1)
        assert _slope(hs, np.array(em) - ref) == pytest.approx(p_em, abs=0.05)
        assert _slope(hs, np.array(pl) - ref) == pytest.approx(p_platen, abs=0.05)
    # The leading error constants of §2.1: −μ²T/2 x0 e^{μT} (EM), −μ³T/6 x0 e^{μT} (order 2).
    h = 2.0**-12
    n = round(T / h)
    em_c = (gbm_em_moments(mu, sigma, x0, h, n)[0] - gbm_moment(mu, sigma, x0, T)) / h
    pl_c = (gbm_platen_moments(mu, sigma, x0, h, n)[0] - gbm_moment(mu, sigma, x0, T)) / h**2
    assert em_c == pytest.approx(-mu**2 * T / 2 * x0 * math.exp(mu * T), rel=1e-3)
    assert pl_c == pytest.approx(-mu**3 * T / 6 * x0 * math.exp(mu * T), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# 2. Local weak error of one step, exact enumeration


def _levy_from_signs(signs: torch.Tensor, m: int, h: float) -> torch.Tensor:
    """The two-point matrix V (P, m, m) of Kloeden & Platen (14.2.8) from given lower-triangle signs."""
    P = signs.shape[0]
    V = torch.zeros(P, m, m, dtype=signs.dtype)
    rows, cols = torch.tril_indices(m, m, -1)
    V[:, rows, cols] = signs * h
    return V - V.transpose(1, 2) - h * torch.eye(m, dtype=signs.dtype)


def one_step_outcomes(m: int, h: float, enumerate_outcomes):
    """All outcomes of one step: three-point ΔW (3^m) × two-point V_{r j}, r > j (2^{m(m−1)/2})."""
    dW, w_dw = enumerate_outcomes(h, 1, m, "three_point")
    n_pairs = m * (m - 1) // 2
    if n_pairs:
        signs, w_v = enumerate_outcomes(1.0, 1, n_pairs, "two_point")
        signs = signs[0]
    else:  # one Brownian motion: V is the constant −h
        signs, w_v = torch.zeros(1, 0, dtype=F64), torch.ones(1, dtype=F64)
    n_dw, n_v = w_dw.numel(), w_v.numel()
    dW = dW[0].repeat_interleave(n_v, dim=0)  # (n_dw n_v, m)
    V = _levy_from_signs(signs.repeat(n_dw, 1), m, h)
    w = w_dw.repeat_interleave(n_v) * w_v.repeat(n_dw)
    return dW, V, w


def one_step_mean(solver, sde, x0, t, h, gs, m, enumerate_outcomes, monkeypatch):
    """``E g(Y_1)`` for each ``g`` in ``gs``, exactly, from state ``x0`` at time ``t``."""
    dW, V, w = one_step_outcomes(m, h, enumerate_outcomes)
    monkeypatch.setattr(platen_module, "two_point_levy",
                        lambda batch, mm, hh, generator, dtype, device: V.to(dtype=dtype))
    x = torch.as_tensor(x0, dtype=F64).reshape(1, -1).repeat(w.numel(), 1)
    y = solver.step(sde, t, x, h, dW, torch.Generator().manual_seed(0))
    return np.array([float((w * g(y)).sum()) for g in gs])


def test_one_step_outcomes_have_the_two_point_law(enumerate_outcomes):
    dW, V, w = one_step_outcomes(3, 0.5, enumerate_outcomes)
    assert float(w.sum()) == pytest.approx(1.0)
    assert torch.equal(V + V.transpose(1, 2), -2 * 0.5 * torch.eye(3, dtype=F64).expand_as(V))
    for r, j in ((1, 0), (2, 0), (2, 1)):  # E V = 0, E V² = h², independent of ΔW
        assert float((w * V[:, r, j]).sum()) == pytest.approx(0.0, abs=1e-15)
        assert float((w * V[:, r, j] ** 2).sum()) == pytest.approx(0.25)
        assert float((w * V[:, r, j] * dW[:, 0] ** 2).sum()) == pytest.approx(0.0, abs=1e-15)


# Exact data: fit where the O(h⁴) remainder is negligible (e/h³ settles by h ≈ 2^-5).
HS = 2.0 ** -np.arange(5, 10)


def _local_slopes(solver, sde, x0, t, gs, exact, m, enumerate_outcomes, monkeypatch):
    errs = np.array([
        one_step_mean(solver, sde, x0, t, h, gs, m, enumerate_outcomes, monkeypatch) - exact(h)
        for h in HS
    ])  # (len(HS), len(gs))
    return [_slope(HS, errs[:, i]) for i in range(len(gs))], errs


@pytest.mark.parametrize("x0", [1.2, -0.4])
def test_platen_local_error_gbm(x0, enumerate_outcomes, monkeypatch):
    mu, sigma = 0.9, 0.7
    gs = [lambda y, k=k: y[:, 0] ** k for k in (1, 2, 3, 4)]
    exact = lambda h: np.array([gbm_moment(mu, sigma, x0, h, k) for k in (1, 2, 3, 4)])  # noqa: E731
    slopes, _ = _local_slopes(PlatenWeak2(), gbm_sde(mu, sigma), [x0], 0.0, gs, exact, 1,
                              enumerate_outcomes, monkeypatch)
    assert min(slopes) > 2.8, slopes
    em_slopes, _ = _local_slopes(EulerMaruyama(), gbm_sde(mu, sigma), [x0], 0.0, gs, exact, 1,
                                 enumerate_outcomes, monkeypatch)
    assert em_slopes == pytest.approx([2.0] * 4, abs=0.15)


@pytest.mark.parametrize("x0", [0.0, 0.7])
def test_platen_local_error_sinh(x0, enumerate_outcomes, monkeypatch):
    gs = [lambda y: y[:, 0], lambda y: y[:, 0] ** 2, sinh_test_function]

    def exact(h):
        m1, m2 = sinh_moments(h, x0)
        return np.array([m1, m2, sinh_expectation(h, x0)])

    slopes, _ = _local_slopes(PlatenWeak2(), sinh_sde(), [x0], 0.0, gs, exact, 1,
                              enumerate_outcomes, monkeypatch)
    assert min(slopes) > 2.8, slopes
    em_slopes, _ = _local_slopes(EulerMaruyama(), sinh_sde(), [x0], 0.0, gs, exact, 1,
                                 enumerate_outcomes, monkeypatch)
    assert max(em_slopes) < 2.2, em_slopes


NONCOMMUTATIVE_GS = {
    "x1": (lambda y: y[:, 0], (0,)),
    "x2": (lambda y: y[:, 1], (1,)),
    "x1^2": (lambda y: y[:, 0] ** 2, (0, 0)),
    "x1x2": (lambda y: y[:, 0] * y[:, 1], (0, 1)),
    "x2^2": (lambda y: y[:, 1] ** 2, (1, 1)),
    "x1^2x2^2": (lambda y: (y[:, 0] * y[:, 1]) ** 2, (0, 0, 1, 1)),
    "x2^4": (lambda y: y[:, 1] ** 4, (1, 1, 1, 1)),
    "x1x2^2": (lambda y: y[:, 0] * y[:, 1] ** 2, (0, 1, 1)),
}


@pytest.mark.parametrize("x0", [(1.0, 1.0), (0.8, -1.3)])
def test_platen_local_error_noncommutative(x0, enumerate_outcomes, monkeypatch):
    """The 2-d non-commutative linear problem: ΔW (3×3 values) and V (2 values) enumerated."""
    sde = linear_sde(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B)
    names = list(NONCOMMUTATIVE_GS)
    gs = [NONCOMMUTATIVE_GS[k][0] for k in names]

    def exact(h):
        out = []
        for k in names:
            idx = NONCOMMUTATIVE_GS[k][1]
            out.append(linear_sde_moment_tensor(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B, x0, h,
                                                len(idx))[idx])
        return np.array(out)

    slopes, errs = _local_slopes(PlatenWeak2(), sde, x0, 0.0, gs, exact, 2,
                                 enumerate_outcomes, monkeypatch)
    assert min(slopes) > 2.8, dict(zip(names, slopes))
    # The noise-driven entries have a non-zero h³ constant: the slope is 3, not more.
    assert slopes[names.index("x2^2")] == pytest.approx(3.0, abs=0.2)
    em_slopes, _ = _local_slopes(EulerMaruyama(), sde, x0, 0.0, gs, exact, 2,
                                 enumerate_outcomes, monkeypatch)
    assert em_slopes[names.index("x2^2")] == pytest.approx(2.0, abs=0.2)


# ---- nonlinear, time-dependent problems: reference from the Itô–Taylor expansion
#
# E g(X_h) = Σ_{k ≤ 3} h^k/k! (L^k g)(t0, x0) + O(h⁴), L = ∂_t + a·∇ + ½ Σ:∇² (Kloeden & Platen
# (5.3.3)). (L^k g)(t0, x0) needs derivatives of order ≤ 2k only, so every coefficient is replaced
# by its Taylor polynomial of degree 6 in (t − t0, x − x0) — computed by evaluating the *same*
# Python function on truncated-polynomial numbers ("jets") — and L acts on those exactly.

_K = 6
# Monomials s^a u1^b u2^c of total degree ≤ _K, and the index tables for products and derivatives.
_MONO = [(a, b, c) for a in range(_K + 1) for b in range(_K + 1 - a) for c in range(_K + 1 - a - b)]
_INDEX = {m: i for i, m in enumerate(_MONO)}
_PAIRS = np.array([(i, j, _INDEX[(m[0] + n[0], m[1] + n[1], m[2] + n[2])])
                   for i, m in enumerate(_MONO) for j, n in enumerate(_MONO)
                   if sum(m) + sum(n) <= _K])
_DERIV = []
for _axis in range(3):
    _src = [i for i, m in enumerate(_MONO) if m[_axis] > 0]
    _dst = [_INDEX[tuple(e - (k == _axis) for k, e in enumerate(_MONO[i]))] for i in _src]
    _DERIV.append((np.array(_src), np.array(_dst), np.array([_MONO[i][_axis] for i in _src])))


class Jet:
    """A polynomial in ``(t − t0, x1 − x0_1, x2 − x0_2)`` truncated at total degree ``_K``."""

    def __init__(self, c):
        self.c = c

    @staticmethod
    def const(v):
        c = np.zeros(len(_MONO))
        c[0] = v
        return Jet(c)

    @staticmethod
    def variable(axis, v):
        out = Jet.const(v)
        out.c[_INDEX[tuple(int(k == axis) for k in range(3))]] = 1.0
        return out

    @staticmethod
    def lift(v):
        return v if isinstance(v, Jet) else Jet.const(float(v))

    def __add__(self, o):
        return Jet(self.c + Jet.lift(o).c)

    __radd__ = __add__

    def __neg__(self):
        return Jet(-self.c)

    def __sub__(self, o):
        return self + (-Jet.lift(o))

    def __rsub__(self, o):
        return Jet.lift(o) - self

    def __mul__(self, o):
        if not isinstance(o, Jet):
            return Jet(self.c * float(o))
        i, j, k = _PAIRS.T
        return Jet(np.bincount(k, weights=self.c[i] * o.c[j], minlength=len(_MONO)))

    __rmul__ = __mul__

    def __truediv__(self, o):
        return Jet(self.c / float(o))

    def __pow__(self, n):
        out = Jet.const(1.0)
        for _ in range(n):
            out = out * self
        return out

    def _series(self, coeffs):
        p = self - self.c[0]
        out, pk = Jet.const(0.0), Jet.const(1.0)
        for a in coeffs:
            out = out + a * pk
            pk = pk * p
        return out

    def sin(self):
        c0 = self.c[0]
        return math.sin(c0) * self._series(_COS) + math.cos(c0) * self._series(_SIN)

    def cos(self):
        c0 = self.c[0]
        return math.cos(c0) * self._series(_COS) - math.sin(c0) * self._series(_SIN)

    def derivative(self, axis):
        src, dst, w = _DERIV[axis]
        return Jet(np.bincount(dst, weights=self.c[src] * w, minlength=len(_MONO)))


_SIN = [0.0 if k % 2 == 0 else (-1) ** (k // 2) / math.factorial(k) for k in range(_K + 1)]
_COS = [0.0 if k % 2 else (-1) ** (k // 2) / math.factorial(k) for k in range(_K + 1)]


class _JetOps:
    sin = staticmethod(Jet.sin)
    cos = staticmethod(Jet.cos)


class _TorchOps:
    @staticmethod
    def sin(v):
        return torch.sin(v) if isinstance(v, torch.Tensor) else math.sin(v)

    @staticmethod
    def cos(v):
        return torch.cos(v) if isinstance(v, torch.Tensor) else math.cos(v)


def ito_taylor_mean(coefficients, gs, x0, t0, order=3):
    """``h ↦ E g(X_h)`` to ``O(h^{order+1})`` for each ``g``, from ``X_{t0} = x0``.

    ``coefficients(t, x1, x2, ops) -> (drift, Σ)`` with ``Σ = bbᵀ`` (so the reference does not
    depend on how a scheme factors the noise); ``g(x1, x2, ops)``.
    """
    assert 2 * order <= _K
    t, x1, x2 = Jet.variable(0, t0), Jet.variable(1, x0[0]), Jet.variable(2, x0[1])
    drift, cov = coefficients(t, x1, x2, _JetOps)
    drift = [Jet.lift(a) for a in drift]
    cov = [[Jet.lift(c) for c in row] for row in cov]

    def L(f):
        out = f.derivative(0)
        for k in range(2):
            out = out + drift[k] * f.derivative(k + 1)
            for m in range(2):
                out = out + 0.5 * cov[k][m] * f.derivative(k + 1).derivative(m + 1)
        return out

    refs = []
    for g in gs:
        coeffs, f = [], Jet.lift(g(x1, x2, _JetOps))
        for k in range(order + 1):
            coeffs.append(f.c[0] / math.factorial(k))
            f = L(f)
        refs.append(coeffs)
    return lambda h: np.array([sum(c * h**k for k, c in enumerate(cs)) for cs in refs])


def _bbt(b):
    return [[sum(b[i][k] * b[j][k] for k in range(len(b[0]))) for j in range(2)] for i in range(2)]


# Each entry: the noise kind's matrix (b, D×M; Σ itself for "covariance") as a function of
# (t, x1, x2, ops), nonlinear and time-dependent where the kind allows.
_NONLINEAR = {
    "general": lambda t, x1, x2, o: (
        [-x1 + o.sin(x2) / 2 + 0.3 * t, -x2 / 2 + o.cos(x1) * (1 + t) / 5],
        [[0.4 + o.sin(x2) / 5, 0.3 * x1], [o.cos(x1) * (1 + t / 2) / 4, 0.2 + x2**2 / 10]]),
    "diagonal": lambda t, x1, x2, o: (
        [-x1 + o.sin(x2) / 2 + t / 3, x1 / 4 - x2 / 2],
        [[0.5 + o.sin(x1) / 4, 0.0], [0.0, o.cos(x2) * (1 + t) / 3]]),
    "scalar": lambda t, x1, x2, o: (
        [o.cos(t) * x2, -x1 / 2 - x2 / 5],
        [[0.3 + x1**2 / 10], [o.sin(x1 + t) / 3]]),
    "additive": lambda t, x1, x2, o: (
        [-x1 + o.sin(x2) + t, -x2 + x1 / 3],
        [[0.5, 0.2], [0.0, 0.4]]),
    "covariance": lambda t, x1, x2, o: (
        [-x1 / 2 + o.sin(x2) / 3, -x2 + t * x1 / 4],
        # Σ = C Cᵀ + I/10 with C = [[½ + x2/5, x1/10], [sin(x1)/5, 2/5]]
        [[(0.5 + x2 / 5) ** 2 + (x1 / 10) ** 2 + 0.1,
          (0.5 + x2 / 5) * o.sin(x1) / 5 + x1 / 10 * 0.4],
         [(0.5 + x2 / 5) * o.sin(x1) / 5 + x1 / 10 * 0.4,
          (o.sin(x1) / 5) ** 2 + 0.16 + 0.1]]),
}


def _coefficients(kind):
    fn = _NONLINEAR[kind]

    def coefficients(t, x1, x2, ops):
        drift, mat = fn(t, x1, x2, ops)
        return drift, (mat if kind == "covariance" else _bbt(mat))

    return coefficients


def _nonlinear_sde(kind):
    fn = _NONLINEAR[kind]

    def parts(t, x):
        drift, mat = fn(t, x[:, 0], x[:, 1], _TorchOps)
        full = lambda v: v if isinstance(v, torch.Tensor) else torch.full_like(x[:, 0], v)  # noqa: E731
        return torch.stack([full(a) for a in drift], 1), [[full(v) for v in row] for row in mat]

    def drift(t, x):
        return parts(t, x)[0]

    def diffusion(t, x):
        mat = parts(t, x)[1]
        if kind == "diagonal":
            return torch.stack([mat[0][0], mat[1][1]], 1)
        if kind == "scalar":
            return torch.stack([mat[0][0], mat[1][0]], 1)
        if kind == "additive":
            return torch.stack([torch.stack(row, 1) for row in mat], 1)[0]
        return torch.stack([torch.stack(row, 1) for row in mat], 1)

    m = 1 if kind == "scalar" else 2
    return FunctionSDE(drift, diffusion, noise_kind=kind), m


_TEST_FUNCTIONS = [
    lambda x1, x2, o: x1 * x2,
    lambda x1, x2, o: o.cos(x1 + 2 * x2),
    lambda x1, x2, o: x2**4 / 4 + x1**3,
]
_TORCH_GS = [lambda y, g=g: g(y[:, 0], y[:, 1], _TorchOps) for g in _TEST_FUNCTIONS]
_X0, _T0 = (0.3, -0.6), 0.5


@pytest.mark.parametrize("kind", list(_NONLINEAR))
def test_platen_local_error_nonlinear_time_dependent(kind, enumerate_outcomes, monkeypatch):
    """Nonlinear, non-autonomous coefficients of every matrix noise kind, from ``t0 = 0.5``.

    This is the test that found the missing ``t + h`` in the supporting values of the scheme (its
    local error was ``O(h²)`` as soon as the drift or diffusion depended on time).
    """
    sde, m = _nonlinear_sde(kind)
    exact = ito_taylor_mean(_coefficients(kind), _TEST_FUNCTIONS, _X0, _T0)
    slopes, _ = _local_slopes(PlatenWeak2(), sde, _X0, _T0, _TORCH_GS, exact, m,
                              enumerate_outcomes, monkeypatch)
    assert min(slopes) > 2.8, slopes
    em_slopes, _ = _local_slopes(EulerMaruyama(), sde, _X0, _T0, _TORCH_GS, exact, m,
                                 enumerate_outcomes, monkeypatch)
    assert min(em_slopes) < 2.2, em_slopes  # the harness sees EM's O(h²) local error


def test_ito_taylor_reference_matches_closed_form():
    """The jet-based reference reproduces an exact linear-SDE moment to O(h⁴)."""
    A, Bs = NONCOMMUTATIVE_A, NONCOMMUTATIVE_B

    def coefficients(t, x1, x2, ops):
        x = (x1, x2)
        drift = [A[i, 0] * x1 + A[i, 1] * x2 for i in range(2)]
        b = [[sum(Bs[j, i, k] * x[k] for k in range(2)) for j in range(2)] for i in range(2)]
        return drift, _bbt(b)

    gs = [lambda x1, x2, o: x2**4, lambda x1, x2, o: x1 * x2**2]
    ref = ito_taylor_mean(coefficients, gs, (0.8, -1.3), 0.0)
    hs = 2.0 ** -np.arange(5, 9)
    exact = np.array([[linear_sde_moment_tensor(A, Bs, (0.8, -1.3), h, 4)[1, 1, 1, 1],
                       linear_sde_moment_tensor(A, Bs, (0.8, -1.3), h, 3)[0, 1, 1]] for h in hs])
    diff = np.array([ref(h) for h in hs]) - exact
    assert [_slope(hs, diff[:, i]) for i in range(2)] == pytest.approx([4.0, 4.0], abs=0.1)


class _PitfallPlaten(PlatenWeak2):
    """Platen's scheme with the known transcription error: ``h^{-1/2}`` also on the first U-sum."""

    def step(self, sde, t, x, h, dW, generator):
        good = super().step(sde, t, x, h, dW, generator)
        P = x.shape[0]
        b0 = diffusion_matrix(sde, sde.diffusion(t, x), P)
        extra = torch.zeros_like(x)
        for r in range(b0.shape[-1]):
            shift = b0[:, :, r] * math.sqrt(h)
            up = diffusion_matrix(sde, sde.diffusion(t, x + shift), P)
            um = diffusion_matrix(sde, sde.diffusion(t, x - shift), P)
            for j in range(b0.shape[-1]):
                if j != r:
                    extra += (up[:, :, j] + um[:, :, j] - 2 * b0[:, :, j]) * dW[:, j : j + 1]
        return good + (h**-0.5 - 1) * 0.25 * extra


def test_local_harness_detects_the_transcription_pitfall(enumerate_outcomes, monkeypatch):
    """``h^{-1/2}`` on the first U-sum (numerics references §4) must show up as a lost order.

    Guards the harness itself: it has to tell the right formula from the wrong one.
    """
    sde, m = _nonlinear_sde("general")
    exact = ito_taylor_mean(_coefficients("general"), _TEST_FUNCTIONS, _X0, _T0)
    slopes, _ = _local_slopes(_PitfallPlaten(), sde, _X0, _T0, _TORCH_GS, exact, m,
                              enumerate_outcomes, monkeypatch)
    assert min(slopes) < 2.0, slopes


# ---------------------------------------------------------------------------------------------
# 3. Global weak order of Platen on the non-commutative problem, without sampling


def _platen_transfer(h, enumerate_outcomes, monkeypatch):
    """``E G⊗G`` (4×4) for one Platen step ``Y ↦ G Y`` on the (linear) non-commutative problem."""
    sde = linear_sde(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B)
    dW, V, w = one_step_outcomes(2, h, enumerate_outcomes)
    monkeypatch.setattr(platen_module, "two_point_levy",
                        lambda batch, mm, hh, generator, dtype, device: V.to(dtype=dtype))
    cols = []
    for e in torch.eye(2, dtype=F64):
        x = e.repeat(w.numel(), 1)
        cols.append(PlatenWeak2().step(sde, 0.0, x, h, dW, None))
    G = torch.stack(cols, dim=2)  # (P, 2, 2): Y = G x
    kron = torch.einsum("pij,pkl->pikjl", G, G).reshape(-1, 4, 4)  # [i k, j l] = G_ij G_kl
    return torch.einsum("p,pij->ij", w, kron).numpy()


def test_platen_transfer_matrix_matches_multistep_enumeration(enumerate_outcomes, monkeypatch,
                                                              tabulated_increments):
    """Two full steps through solve() (18² outcomes) agree with (E G⊗G)² — the transfer argument."""
    h, x0 = 0.25, np.array([1.0, -0.5])
    dW1, V1, w1 = one_step_outcomes(2, h, enumerate_outcomes)
    n1 = w1.numel()
    dW = torch.stack([dW1.repeat_interleave(n1, dim=0), dW1.repeat(n1, 1)])
    Vs = [V1.repeat_interleave(n1, dim=0), V1.repeat(n1, 1, 1)]
    w = w1.repeat_interleave(n1) * w1.repeat(n1)
    calls = []

    def fake_levy(batch, m, hh, generator, dtype, device):
        calls.append(1)
        return Vs[len(calls) - 1]

    monkeypatch.setattr(platen_module, "two_point_levy", fake_levy)
    x = torch.tensor(x0, dtype=F64).repeat(w.numel(), 1)
    y = solve(linear_sde(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B), x, (0.0, 2 * h), dt=h,
              method=PlatenWeak2(), increments=tabulated_increments(dW, 0.0, h), generator=0).final
    second = torch.einsum("p,pi,pj->ij", w, y, y).numpy()
    E2 = _platen_transfer(h, enumerate_outcomes, monkeypatch)
    pred = (np.linalg.matrix_power(E2, 2) @ np.kron(x0, x0)).reshape(2, 2)
    np.testing.assert_allclose(second, pred, rtol=1e-13, atol=1e-15)


def test_platen_global_weak_order_noncommutative_exact(enumerate_outcomes, monkeypatch):
    """Exact weak errors of E X1², E X1X2, E X2² at T = 1 for h = 2^-2 … 2^-6: slope 2."""
    T, x0 = 1.0, np.array([1.0, 1.0])
    ref = linear_sde_moments(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B, x0, T).second
    assert ref[0, 0] == pytest.approx(math.exp(-T), rel=1e-13)  # the published E X1² = e^{-t}
    hs = 2.0 ** -np.arange(2, 7)
    errs = []
    for h in hs:
        E2 = _platen_transfer(h, enumerate_outcomes, monkeypatch)
        second = (np.linalg.matrix_power(E2, round(T / h)) @ np.kron(x0, x0)).reshape(2, 2)
        errs.append((second - ref)[[0, 0, 1], [0, 1, 1]])
    errs = np.array(errs)
    for i in range(3):
        assert _slope(hs[1:], errs[1:, i]) == pytest.approx(2.0, abs=0.1), errs[:, i]


def test_exact_em_ou_moments_converge_to_the_continuous_ones_at_order_one():
    """No Monte Carlo: the exact Euler–Maruyama moments of a 2-d OU process approach the
    closed-form continuous moments (Van Loan's block exponential) with weak order 1 — the error
    halves with the step to within 2 % on h = 2⁻⁴ … 2⁻⁹ — and the continuous covariance solves
    its Lyapunov ODE (checked by a central difference)."""
    A = np.array([[1.0, 0.4], [-0.3, 0.7]])
    B = np.array([[0.5, 0.2, 0.0], [0.1, 0.0, 0.3]])
    mean, x0, T = np.array([0.2, -0.1]), np.array([1.0, -2.0]), 1.0
    exact = ou_moments(A, B, x0, T, mean)
    errs = []
    for k in range(4, 10):
        h = 2.0**-k
        em = ou_em_moments(A, B, x0, h, round(T / h), mean)
        errs.append(max(np.abs(em.mean - exact.mean).max(), np.abs(em.cov - exact.cov).max()))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all(np.abs(ratios - 2.0) < 0.04), ratios
    eps = 1e-5
    dC = (ou_moments(A, B, x0, T + eps, mean).cov - ou_moments(A, B, x0, T - eps, mean).cov) / (2 * eps)
    C = exact.cov
    np.testing.assert_allclose(dC, -A @ C - C @ A.T + B @ B.T, rtol=0, atol=1e-8)
    dm = (ou_moments(A, B, x0, T + eps, mean).mean - ou_moments(A, B, x0, T - eps, mean).mean) / (2 * eps)
    np.testing.assert_allclose(dm, -A @ (exact.mean - mean), rtol=0, atol=1e-8)
