"""Exact linear-moment references: operators against enumeration, ODEs against an independent
integration, recursions against Monte Carlo, and the exact weak-error orders of the SMEs.

The data sets are drawn once from fixed numpy seeds; the asserted properties (orders, exactness)
hold for any data, so no seed was chosen to pass. Monte-Carlo comparisons use 5 standard errors
per compared number (false-failure probability ≈ 6e-7 each, < 1e-4 per test).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool import OrderFit
from smetool.exact import (
    AffineGradientModel,
    ExactWeakErrors,
    HeavyBallMoments,
    LeastSquaresSGDMoments,
    LinearDropoutMoments,
    MomentPath,
    Quadratic,
)

Z = 5.0  # standard errors per Monte-Carlo comparison


def _data(seed: int, n: int, d: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)


def _pad(H):
    """Augment a gradient operator (d, d+1) to the (d+1, d+1) map on x̃ (zero last row)."""
    return np.vstack([H, np.zeros((1, H.shape[1]))])


# ------------------------------------------------------------------ operators, exactly
def test_dropout_operators_match_mask_enumeration():
    X, y, _ = _data(1, 5, 3)
    p, d = 0.7, 3
    model = LinearDropoutMoments(X, y, p)
    S, b = X.T @ X / 5, X.T @ y / 5
    mean, second = np.zeros((d, d + 1)), np.zeros((d * d, (d + 1) ** 2))
    for bits in itertools.product([0, 1], repeat=d):
        w = np.prod([p if bit else 1 - p for bit in bits])
        u = np.array(bits) / p
        H = np.concatenate([np.diag(u) @ S @ np.diag(u), -(u * b)[:, None]], axis=1)
        mean += w * H
        second += w * np.kron(H, H)
    np.testing.assert_allclose(model.mean_operator, mean, rtol=0, atol=1e-13)
    np.testing.assert_allclose(model.second_operator, second, rtol=0, atol=1e-13)
    # The implicit regulariser: ∇²L_S = S + v diag(S).
    np.testing.assert_allclose(model.hessian, S + model.v * np.diag(np.diag(S)), atol=1e-14)


def test_sgd_step_operator_matches_batch_enumeration_and_reference_formula():
    A, y, _ = _data(2, 4, 2)
    n, B, lr = 4, 2, 0.3
    model = LeastSquaresSGDMoments(A, y, batch_size=B)
    G = [np.block([[np.eye(2) - lr * np.outer(a, a), lr * yi * a[:, None]],
                   [np.zeros((1, 2)), np.ones((1, 1))]]) for a, yi in zip(A, y)]
    enum = np.zeros((9, 9))
    for batch in itertools.product(range(n), repeat=B):
        Gb = sum(G[i] for i in batch) / B
        enum += np.kron(Gb, Gb) / n**B
    np.testing.assert_allclose(model.step_operator(lr), enum, rtol=0, atol=1e-14)
    # The numerics notes' closed form: Ḡ⊗Ḡ + (1/B)((1/n)Σ G_i⊗G_i − Ḡ⊗Ḡ).
    Gbar = sum(G) / n
    formula = np.kron(Gbar, Gbar) + (sum(np.kron(g, g) for g in G) / n - np.kron(Gbar, Gbar)) / B
    np.testing.assert_allclose(model.step_operator(lr), formula, rtol=0, atol=1e-14)


def test_gradient_covariance_matches_per_sample_and_mask_formulas():
    A, y, x = _data(3, 6, 3)
    model = LeastSquaresSGDMoments(A, y, batch_size=2)
    g = A * (A @ x - y)[:, None]
    c = g - g.mean(axis=0)
    np.testing.assert_allclose(model.gradient_covariance(x), c.T @ c / (6 * 2), atol=1e-13)
    np.testing.assert_allclose(model.gradient_covariance(np.stack([x, x]))[1], c.T @ c / 12, atol=1e-13)

    X, yd, th = _data(4, 5, 3)
    drop = LinearDropoutMoments(X, yd, 0.6)
    grads, ws = [], []
    for bits in itertools.product([0, 1], repeat=3):
        u = np.array(bits) / 0.6
        grads.append(u * (X.T @ (X @ (u * th) - yd)) / 5)
        ws.append(np.prod([0.6 if bit else 0.4 for bit in bits]))
    grads, ws = np.array(grads), np.array(ws)
    mu = ws @ grads
    cov = (grads - mu).T @ ((grads - mu) * ws[:, None])
    np.testing.assert_allclose(drop.gradient_covariance(th), cov, atol=1e-13)


# ------------------------------------------------------------------ the SME ODEs
def _explicit_sme_rhs(A_rows, y, B, c, lr):
    """The (m, M) ODE of the numerics notes §2.4, written out term by term."""
    n, d = A_rows.shape
    A = A_rows.T @ A_rows / n
    b = A_rows.T @ y / n
    K = (np.eye(d) + c * A) @ A
    k0 = (np.eye(d) + c * A) @ b

    def rhs(_, u):
        m, M = u[:d], u[d:].reshape(d, d)
        ES = np.zeros((d, d))
        for a, yi in zip(A_rows, y):
            aa = np.outer(a, a)
            ES += (aa @ M @ aa - yi * aa @ np.outer(m, a) - yi * np.outer(a, m) @ aa + yi**2 * aa) / n
        ES -= A @ M @ A - A @ np.outer(m, b) - np.outer(b, m) @ A + np.outer(b, b)
        ES /= B
        dm = -K @ m + k0
        dM = -K @ M - M @ K.T + np.outer(k0, m) + np.outer(m, k0) + lr * ES
        return np.concatenate([dm, dM.ravel()])

    return rhs


@pytest.mark.parametrize("order", [1, 2])
def test_sme_moments_match_independent_ode_integration(order):
    A, y, x0 = _data(5, 6, 2)
    lr, B, T = 0.2, 2, 0.7
    model = LeastSquaresSGDMoments(A, y, batch_size=B)
    rhs = _explicit_sme_rhs(A, y, B, 0.0 if order == 1 else lr / 2, lr)
    u0 = np.concatenate([x0, np.outer(x0, x0).ravel()])
    sol = scipy.integrate.solve_ivp(rhs, (0, T), u0, rtol=1e-12, atol=1e-14, method="DOP853")
    path = model.sme_moments(x0, lr, order, [0.0, T])
    np.testing.assert_allclose(path.mean[0], x0)
    np.testing.assert_allclose(path.mean[-1], sol.y[:2, -1], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(path.second[-1].ravel(), sol.y[2:, -1], rtol=1e-9, atol=1e-11)


def test_means_are_gradient_descent_and_gradient_flow():
    A, y, x0 = _data(6, 6, 2)
    model = LeastSquaresSGDMoments(A, y, batch_size=1)
    H, b = model.hessian, model.gradient_offset
    lr, k = 0.125, 8
    x = x0.copy()
    for _ in range(k):
        x = x - lr * (H @ x - b)
    np.testing.assert_allclose(model.discrete_moments(x0, lr, k * lr).mean[0], x, atol=1e-13)
    xs = np.linalg.solve(H, b)
    for order, K in ((1, H), (2, (np.eye(2) + lr / 2 * H) @ H)):
        expect = xs + scipy.linalg.expm(-K * 1.0) @ (x0 - xs)  # same minimiser for both orders
        np.testing.assert_allclose(model.sme_moments(x0, lr, order, 1.0).mean[0], expect, atol=1e-12)


# ------------------------------------------------------------------ recursions vs Monte Carlo
def _assert_moments_match(samples: torch.Tensor, path: MomentPath):
    """Mean and raw second moments of ``samples (N, s)`` against the exact ones, within Z SE."""
    z = samples.double()
    N = z.shape[0]
    outer = (z.unsqueeze(2) * z.unsqueeze(1)).reshape(N, -1)
    for est, exact in ((z, path.mean[-1]), (outer, path.second[-1].ravel())):
        mean = est.mean(dim=0).numpy()
        se = est.std(dim=0).numpy() / np.sqrt(N)
        assert np.all(np.abs(mean - exact) <= Z * se + 1e-12), (mean, exact, se)


def test_sgd_recursion_matches_monte_carlo():
    A, y, x0 = _data(7, 6, 2)
    lr, k, B, N = 0.25, 8, 2, 200_000
    model = LeastSquaresSGDMoments(A, y, batch_size=B)
    gen = torch.Generator().manual_seed(11)
    At, yt = torch.tensor(A), torch.tensor(y)
    x = torch.tensor(x0).repeat(N, 1)
    for _ in range(k):
        idx = torch.randint(6, (N, B), generator=gen)
        a = At[idx]
        r = (a * x.unsqueeze(1)).sum(-1) - yt[idx]
        x = x - lr * (r.unsqueeze(-1) * a).mean(1)
    _assert_moments_match(x, model.discrete_moments(x0, lr, k * lr))


def test_dropout_recursion_matches_monte_carlo():
    X, y, th0 = _data(8, 6, 3)
    lr, k, N = 0.2, 10, 200_000
    model = LinearDropoutMoments(X, y, 0.75)
    gen = torch.Generator().manual_seed(12)
    th = torch.tensor(th0).repeat(N, 1)
    for _ in range(k):
        th = model.step(th, lr, gen)
    _assert_moments_match(th, model.discrete_moments(th0, lr, k * lr))


def test_heavy_ball_recursion_matches_monte_carlo():
    A, y, x0 = _data(9, 5, 2)
    eps, lam, k, N = 0.25, 1.5, 8, 200_000
    model = HeavyBallMoments(LeastSquaresSGDMoments(A, y, batch_size=1), lam)
    gen = torch.Generator().manual_seed(13)
    At, yt = torch.tensor(A), torch.tensor(y)
    x, v = torch.tensor(x0).repeat(N, 1), torch.zeros(N, 2, dtype=torch.float64)
    for _ in range(k):
        i = torch.randint(5, (N,), generator=gen)
        g = ((At[i] * x).sum(1) - yt[i]).unsqueeze(1) * At[i]
        v = (1 - lam * eps) * v - eps * g
        x = x + eps * v
    z0 = np.concatenate([x0, np.zeros(2)])
    _assert_moments_match(torch.cat([x, v], 1), model.discrete_moments(z0, eps, k * eps))


# ------------------------------------------------------------------ exact weak-error orders
LRS_REF = [2.0**-k for k in range(5, 9)]  # the range of the numerics notes §2.4
LRS_LONG = [2.0**-k for k in range(5, 13)]


def test_sgd_weak_error_orders_in_the_reference_setting():
    """n = 6, d = 2, B = 1, T = 1, g = f (numerics notes §2.4; their data set is unspecified, so
    the digits differ but the orders must agree: SME-1 → 1, SME-2 → 2)."""
    A, y, x0 = _data(0, 6, 2)
    model = LeastSquaresSGDMoments(A, y, batch_size=1)
    err = model.weak_errors(x0, LRS_LONG, 1.0)
    e1, e2 = err.series("f", 1), err.series("f", 2)
    # Same magnitudes as the notes (1.44e-3 … 2.02e-4 and 2.9e-4 … 4.4e-6 at 2^-5 … 2^-8).
    assert 1e-4 < abs(e1[0]) < 1e-2 and 1e-6 < abs(e2[3]) < 1e-4
    r1, r2 = err.ratios("f", 1), err.ratios("f", 2)
    assert np.all((r1[:3] > 0.85) & (r1[:3] < 1.05)) and abs(r1[2] - 1) < 0.03
    assert np.all((r2[:3] > 1.95) & (r2[:3] < 2.1))
    assert abs(r1[-1] - 1) < 0.003 and abs(r2[-1] - 2) < 0.003  # → 1 and → 2 at 2^-12
    fit1, fit2 = err.fit("f", 1, lrs=LRS_REF), err.fit("f", 2, lrs=LRS_REF)
    assert isinstance(fit1, OrderFit)
    assert abs(fit1.slope - 1) < 0.06 and abs(fit2.slope - 2) < 0.06
    for name in ("norm_sq", "x[0]", "x[1]"):
        assert abs(err.ratios(name, 1)[-1] - 1) < 0.01 and abs(err.ratios(name, 2)[-1] - 2) < 0.01


def test_dropout_weak_error_orders():
    X, y, th0 = _data(10, 8, 3)
    model = LinearDropoutMoments(X, y, 0.8)
    err = model.weak_errors(th0, LRS_LONG, 1.0)
    for name in err.names:
        r1, r2 = err.ratios(name, 1), err.ratios(name, 2)
        assert abs(r1[-1] - 1) < 0.01 and abs(r2[-1] - 2) < 0.01, (name, r1, r2)
        assert abs(err.fit(name, 1, lrs=LRS_REF).slope - 1) < 0.1
        assert abs(err.fit(name, 2, lrs=LRS_REF).slope - 2) < 0.1


def test_heavy_ball_weak_error_order_one():
    A, y, x0 = _data(11, 6, 2)
    model = HeavyBallMoments(LeastSquaresSGDMoments(A, y), damping=1.0)
    err = model.weak_errors(np.concatenate([x0, np.zeros(2)]), LRS_LONG, 1.0)
    assert err.orders == (1,)
    for name in err.names:
        assert abs(err.ratios(name, 1)[-1] - 1) < 0.02, (name, err.ratios(name, 1))


# ------------------------------------------------------------------ invariants
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 6), d=st.integers(1, 3),
       batch=st.integers(1, 6), k=st.integers(1, 20))
def test_moment_matrices_are_consistent(seed, n, d, batch, k):
    A, y, x0 = _data(seed, n, d)
    model = LeastSquaresSGDMoments(A, y, batch_size=min(batch, n))
    lr = 0.5 / max(1.0, np.linalg.eigvalsh(model.hessian).max())
    for path in (model.discrete_moments(x0, lr, k * lr), model.sme_moments(x0, lr, 2, k * lr)):
        C = path.covariance[-1]
        np.testing.assert_allclose(C, C.T, atol=1e-12)
        scale = max(1.0, np.abs(path.second[-1]).max())
        assert np.linalg.eigvalsh(C).min() > -1e-10 * scale


def test_quadratic_and_results():
    g = Quadratic(np.array([[2.0, 1.0], [1.0, 4.0]]), np.array([1.0, -1.0]), 0.5)
    z = np.array([0.3, -0.7])
    value = g(torch.tensor(z).unsqueeze(0))
    assert value.shape == (1,)
    assert float(value) == pytest.approx(float(g.expectation(z, np.outer(z, z))))
    assert float(Quadratic.squared_norm(3, [1])(torch.tensor([[1.0, 2.0, 3.0]]))) == 4.0
    assert float(Quadratic.coordinate(3, 2)(torch.tensor([[1.0, 2.0, 3.0]]))) == 3.0
    A, y, x0 = _data(12, 4, 2)
    model = LeastSquaresSGDMoments(A, y)
    err = model.weak_errors(x0, [0.25, 0.125], [0.5, 1.0], orders=[2])
    assert isinstance(err, ExactWeakErrors) and err.errors.shape == (1, 4, 2, 2)
    assert "SME-2 f" in repr(err) and set(err.to_dict()) >= {"errors", "lrs"}
    path = model.discrete_moments(x0, 0.25, [0.5, 1.0])
    assert path.to_dict()["kind"] == "discrete" and "MomentPath" in repr(path)
    with pytest.raises(KeyError, match="no test function"):
        err.series("nope", 2)
    with pytest.raises(KeyError, match="no SME order"):
        err.series("f", 1)


# ------------------------------------------------------------------ validation
def test_validation_messages():
    A, y, x0 = _data(13, 4, 2)
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer in \[1, n\] = \[1, 4\]; got 5"):
        LeastSquaresSGDMoments(A, y, batch_size=5)
    with pytest.raises(ValueError, match=r"`y` must have shape \(4,\)"):
        LeastSquaresSGDMoments(A, y[:3])
    with pytest.raises(ValueError, match="`A` must be 2-dimensional"):
        LeastSquaresSGDMoments(y, y)
    with pytest.raises(ValueError, match="`A` must be finite"):
        LeastSquaresSGDMoments(np.full((4, 2), np.nan), y)
    with pytest.raises(TypeError, match="`A` must be a real array"):
        LeastSquaresSGDMoments("abc", y)
    with pytest.raises(ValueError, match=r"`keep_prob` must be in \(0, 1\]; got 1.5"):
        LinearDropoutMoments(A, y, 1.5)
    with pytest.raises(ValueError, match=r"`y` must have shape \(4,\)"):
        LinearDropoutMoments(A, y[:2], 0.5)
    model = LeastSquaresSGDMoments(A, y)
    with pytest.raises(ValueError, match="whole number of steps"):
        model.discrete_moments(x0, 0.3, 1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        model.discrete_moments(x0, 0.25, [1.0, 0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        model.sme_moments(x0, 0.25, 1, [1.0, 0.5])
    with pytest.raises(ValueError, match="`times` must be non-empty"):
        model.sme_moments(x0, 0.25, 1, [])
    with pytest.raises(ValueError, match="`times` must be a number or a sequence"):
        model.sme_moments(x0, 0.25, 1, None)
    with pytest.raises(ValueError, match="`lr` must be a positive finite number; got -1"):
        model.sme_moments(x0, -1, 1, 1.0)
    with pytest.raises(ValueError, match=r"`order` must be one of \(1, 2\); got 3"):
        model.sme_moments(x0, 0.25, 3, 1.0)
    with pytest.raises(ValueError, match=r"`z0` must have shape \(2,\)"):
        model.sme_moments(np.zeros(3), 0.25, 1, 1.0)
    with pytest.raises(ValueError, match="`lrs` must hold at least one"):
        model.weak_errors(x0, [], 1.0)
    with pytest.raises(TypeError, match="must map names to Quadratic"):
        model.weak_errors(x0, [0.25], 1.0, test_functions={"f": lambda x: x})
    class Bare(AffineGradientModel):
        def test_functions(self):
            return {}

    with pytest.raises(ValueError, match=r"Bare: operators must have shapes \(d, d\+1\)"):
        Bare(np.zeros((2, 3)), np.zeros((4, 4)))
    with pytest.raises(TypeError, match="`base` must be an AffineGradientModel"):
        HeavyBallMoments(object(), 1.0)
    with pytest.raises(ValueError, match="`damping` must be a positive finite number"):
        HeavyBallMoments(model, 0.0)
    with pytest.raises(ValueError, match=r"`order` must be one of \(1,\); got 2"):
        HeavyBallMoments(model, 1.0).sme_moments(np.zeros(4), 0.25, 2, 1.0)
