"""The SGD plug-ins: the discrete step, the SME's drift and factored diffusion, and weak order 1.

Exact checks first (enumeration of every mini-batch, autograd, the exact-moment model), then Monte
Carlo with tolerances of 5 standard errors per compared number (false-failure probability
≈ 6e-7 each) and a 99 % confidence interval for the fitted order.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import smetool
from smetool import ExactReference, fit_order, weak_error
from smetool.algorithms.base import Algorithm
from smetool.algorithms.sgd import DEFAULT_LEAST_SQUARES, SGDSME, FiniteSumSGD, SGDLeastSquares
from smetool.algorithms.sgd_two_layer import SGDTwoLayer
from smetool.models.two_layer import TwoLayerNet

Z = 5.0


def _problems(batch_size=2):
    return [SGDLeastSquares.default(batch_size=batch_size), SGDTwoLayer.default(batch_size=batch_size)]


def _point(algo: FiniteSumSGD, n_paths: int = 1, seed: int = 0) -> torch.Tensor:
    """A state away from x0 (so that nothing special happens there)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = algo.initial_state(n_paths)
    return x0 + 0.3 * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)


# ------------------------------------------------------------------ exact
@pytest.mark.parametrize("algo", _problems(), ids=["least_squares", "two_layer"])
def test_minibatch_gradient_moments_by_enumeration(algo):
    """Over all n^B ordered batches: mean = ∇f and covariance = Σ = (1/B)(1/n)Σ(∇f_i−∇f)(…)ᵀ."""
    n, B = algo.n_points, algo.batch_size
    x = _point(algo)
    index = torch.tensor(list(itertools.product(range(n), repeat=B)))
    g = algo.batch_gradient(x.expand(index.shape[0], -1), index)
    mean = g.mean(dim=0)
    cov = (g - mean).T @ (g - mean) / index.shape[0]
    torch.testing.assert_close(mean, algo.gradient(x)[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(cov, algo.noise_covariance(x)[0], rtol=0, atol=1e-14)


def _autograd_order2_drift(algo: FiniteSumSGD, x: torch.Tensor, lr: float) -> torch.Tensor:
    """−∇(f + lr/4 ‖∇f‖²) by autograd (paths are independent, so sums give per-path gradients)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(algo.loss(x).sum(), x, create_graph=True)
    phi = algo.loss(x) + 0.25 * lr * (grad * grad).sum(dim=1)
    (out,) = torch.autograd.grad(phi.sum(), x)
    return -out


@pytest.mark.parametrize("algo", _problems(1), ids=["least_squares", "two_layer"])
def test_sme_drifts_match_autograd(algo):
    x, lr = _point(algo, 5), 0.1
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(algo.loss(xr).sum(), xr)
    torch.testing.assert_close(algo.sme(lr, 1).drift(0.0, x), -grad, rtol=0, atol=1e-13)
    torch.testing.assert_close(algo.sme(lr, 2).drift(0.0, x), _autograd_order2_drift(algo, x, lr),
                               rtol=0, atol=1e-13)


def _autograd_per_sample_gradients(algo: FiniteSumSGD, x: torch.Tensor) -> torch.Tensor:
    out = []
    for p in range(x.shape[0]):
        def losses(theta):
            if isinstance(algo, SGDLeastSquares):
                return 0.5 * (algo.A @ theta - algo.y) ** 2
            f = algo.net.forward(theta.unsqueeze(0), algo.X)[0]
            return 0.5 * (f - algo.y) ** 2
        out.append(torch.autograd.functional.jacobian(losses, x[p]))
    return torch.stack(out)  # (P, n, D)


@pytest.mark.parametrize("algo", _problems(3), ids=["least_squares", "two_layer"])
def test_noise_factor_reproduces_sigma(algo):
    x, lr = _point(algo, 4), 0.2
    g = _autograd_per_sample_gradients(algo, x)
    torch.testing.assert_close(algo.per_sample_gradients(x), g, rtol=0, atol=1e-13)
    c = g - g.mean(dim=1, keepdim=True)
    sigma = torch.einsum("pni,pnj->pij", c, c) / (algo.n_points * algo.batch_size)
    F = algo.noise_factor(x)
    assert F.shape == (4, algo.dim, algo.n_points)
    torch.testing.assert_close(F @ F.transpose(1, 2), sigma, rtol=0, atol=1e-14)
    if isinstance(algo, SGDLeastSquares):  # and the exact-moment model's Kronecker form
        np.testing.assert_allclose(sigma.numpy(), algo.exact_moments().gradient_covariance(x.numpy()),
                                   rtol=0, atol=1e-13)
    dW = torch.randn(4, algo.n_points, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    sde = algo.sme(lr, 2)
    assert sde.noise_kind is smetool.NoiseKind.GENERAL and sde.noise_dim == algo.n_points
    torch.testing.assert_close(sde.diffusion(0.0, x), math.sqrt(lr) * F)
    torch.testing.assert_close(sde.diffusion_product(0.0, x, dW),
                               math.sqrt(lr) * (F @ dW.unsqueeze(-1))[..., 0],
                               rtol=0, atol=1e-14)


def test_default_problem_is_as_documented():
    algo = SGDLeastSquares.default()
    assert isinstance(algo, Algorithm) and algo.name == "sgd" and algo.sme_orders == (1, 2)
    np.testing.assert_allclose(np.linalg.eigvalsh(algo.hessian.numpy()), [0.35, 0.58], atol=0.01)
    exact = algo.exact_moments()
    err = exact.weak_errors(algo.x0.numpy(), [2.0**-k for k in range(3, 7)], 1.0, orders=[1])
    np.testing.assert_allclose(err.series("x[0]", 1)[[0, -1]], [-1.03e-2, -1.25e-3], rtol=0.01)
    np.testing.assert_allclose(err.series("f", 1)[[0, -1]], [-1.20e-2, -1.63e-3], rtol=0.01)
    assert set(algo.test_functions()) == {"f", "norm_sq", "x[0]"}
    assert DEFAULT_LEAST_SQUARES["batch_size"] == algo.batch_size == 1


# ------------------------------------------------------------------ Monte Carlo
@pytest.mark.parametrize("algo", _problems(2), ids=["least_squares", "two_layer"])
def test_one_step_has_mean_minus_lr_grad_and_covariance_lr2_sigma(algo):
    N, lr = 200_000, 0.1
    x = _point(algo).expand(N, -1)
    delta = algo.step(x, lr, torch.Generator().manual_seed(2)) - x
    mean_exact = -lr * algo.gradient(x[:1])[0]
    cov_exact = lr**2 * algo.noise_covariance(x[:1])[0]
    se = delta.std(dim=0) / math.sqrt(N)
    assert bool(((delta.mean(dim=0) - mean_exact).abs() <= Z * se + 1e-15).all())
    c = delta - mean_exact  # centred at the exact mean: E c cᵀ = lr² Σ
    prods = (c.unsqueeze(2) * c.unsqueeze(1)).reshape(N, -1)
    se_c = prods.std(dim=0) / math.sqrt(N)
    assert bool(((prods.mean(dim=0) - cov_exact.reshape(-1)).abs() <= Z * se_c + 1e-15).all())


def _sgd_producer(algo, lr, horizon):
    def producer(n, gen):
        x = algo.initial_state(n)
        for _ in range(round(horizon / lr)):
            x = algo.step(x, lr, gen)
        return x.unsqueeze(0)
    return producer


def test_order_one_weak_error_monte_carlo_slope():
    """SGD (Monte Carlo, 2·10⁵ paths per lr) against the exact SME-1 moments on the default
    problem: every error resolved (≥ 5 SE), equal to the exact discrete-minus-SME error within
    5 SE, and a fitted order whose 99 % CI contains 1. Exact local slopes over this range are
    1.01 (x[0]) and 0.93 → 0.99 (f, ‖x‖²)."""
    algo, T = SGDLeastSquares.default(), 1.0
    lrs = [2.0**-k for k in range(3, 8)]
    exact = algo.exact_moments()
    x0 = algo.x0.numpy()
    tests = exact.test_functions()
    names = list(algo.test_functions())

    def reference(lr):
        path = exact.sme_moments(x0, lr, 1, T)
        return {k: float(path.expectation(tests[k])[0]) for k in names}

    table = weak_error(ExactReference(reference), lambda lr: _sgd_producer(algo, lr, T),
                       algo.test_functions(), 200_000, seed=2024, steps=lrs, progress=False)
    exact_err = exact.weak_errors(x0, lrs, T, orders=[1], test_functions={k: tests[k] for k in names})
    for name in names:
        h, e, se = table.series(name)
        assert np.all(np.abs(e) >= Z * se), (name, e / se)
        np.testing.assert_array_less(np.abs(e - exact_err.series(name, 1)), Z * se)
        fit = fit_order(h, e, se, min_snr=Z, confidence=0.99)
        assert fit.contains(1.0), (name, fit)


@pytest.mark.parametrize("order", [1, 2])
def test_sme_solved_with_platen_matches_exact_sme_moments(order):
    """The plug-in's SME integrated by PlatenWeak2 at h = lr/4 agrees with the exact SME moments;
    the noise contributes at least twice the tolerance to E‖X‖² (so a missing or mis-scaled
    diffusion would be caught)."""
    algo, lr, T, N = SGDLeastSquares.default(), 0.25, 0.5, 50_000
    sol = smetool.solve(algo.sme(lr, order), algo.initial_state(N), (0.0, T), dt=lr / 4,
                        method=smetool.PlatenWeak2(), generator=7)
    exact = algo.exact_moments()
    path = exact.sme_moments(algo.x0.numpy(), lr, order, T)
    tests = exact.test_functions()
    for name, g in algo.test_functions().items():
        v = g(sol.final)
        se = float(v.std()) / math.sqrt(N)
        assert abs(float(v.mean()) - float(path.expectation(tests[name])[0])) <= Z * se, name
    se_norm = float(algo.test_functions()["norm_sq"](sol.final).std()) / math.sqrt(N)
    assert np.trace(path.covariance[0]) > 2 * Z * se_norm


# ------------------------------------------------------------------ plumbing
def test_two_layer_sme_solves_and_dtypes_follow():
    algo = SGDTwoLayer.default()
    x = algo.initial_state(3, dtype=torch.float32)
    assert algo.step(x, 0.1, torch.Generator().manual_seed(0)).dtype == torch.float32
    sol = smetool.solve(algo.sme(0.1, 2), algo.initial_state(8), (0.0, 0.2), dt=0.05,
                        method=smetool.PlatenWeak2(), generator=0)
    assert sol.final.shape == (8, algo.dim) and bool(torch.isfinite(sol.final).all())
    assert "SGDTwoLayer" in repr(algo) and "order=2" in repr(algo.sme(0.1, 2))
    assert "SGDLeastSquares(n=6, d=2, batch_size=1)" == repr(SGDLeastSquares.default())
    relu = SGDTwoLayer(TwoLayerNet(2, 3, "relu"), algo.X, algo.y, torch.zeros(9))
    with pytest.warns(UserWarning, match="non-smooth activation"):
        relu.sme(0.1)


def test_validation_messages():
    A, y, x0 = DEFAULT_LEAST_SQUARES["A"], DEFAULT_LEAST_SQUARES["y"], DEFAULT_LEAST_SQUARES["x0"]
    with pytest.raises(ValueError,
                       match=r"SGDLeastSquares: `batch_size` must be an integer in \[1, n\] = \[1, 6\]; "
                             r"got 0"):
        SGDLeastSquares(A, y, x0, batch_size=0)
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer in \[1, n\] = \[1, 6\]; got 7"):
        SGDLeastSquares(A, y, x0, batch_size=7)
    with pytest.raises(ValueError, match="SGDLeastSquares: `A` must be 2-dimensional"):
        SGDLeastSquares(y, y, x0)
    with pytest.raises(ValueError, match=r"`y` must have shape \(6,\)"):
        SGDLeastSquares(A, y[:5], x0)
    with pytest.raises(ValueError, match=r"`x0` must have shape \(2,\)"):
        SGDLeastSquares(A, y, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="`A` must be finite"):
        SGDLeastSquares(torch.full((6, 2), float("inf")), y, x0)
    with pytest.raises(TypeError, match="`A` must be a real tensor"):
        SGDLeastSquares("A", y, x0)
    with pytest.raises(TypeError, match="SGDLeastSquares.default: unknown keyword 'b'"):
        SGDLeastSquares.default(b=1)
    algo = SGDLeastSquares.default()
    with pytest.raises(ValueError, match="SGDLeastSquares: `lr` must be a positive finite number; got -0.1"):
        algo.step(algo.initial_state(2), -0.1, torch.Generator())
    with pytest.raises(ValueError, match="SGDSME: `order` must be 1 or 2; got 3"):
        algo.sme(0.1, 3)
    with pytest.raises(ValueError, match="SGDSME: `lr` must be a positive finite number"):
        algo.sme(float("nan"))
    with pytest.raises(TypeError, match="SGDSME: `algorithm` must be a FiniteSumSGD"):
        SGDSME(object(), 0.1)
    with pytest.raises(ValueError, match="`n_paths` must be a positive integer; got 0"):
        algo.initial_state(0)
    with pytest.raises(ValueError, match=r"`x` must have shape \(paths, 2\)"):
        algo.loss(torch.zeros(3, 4, dtype=torch.float64))
    two = SGDTwoLayer.default()
    with pytest.raises(TypeError, match="SGDTwoLayer: `net` must be a TwoLayerNet"):
        SGDTwoLayer("net", two.X, two.y, two.x0)
    with pytest.raises(ValueError, match=r"SGDTwoLayer: `X` must have shape \(n, 2\)"):
        SGDTwoLayer(two.net, two.X[:, :1], two.y, two.x0)
    with pytest.raises(ValueError, match=r"SGDTwoLayer: `y` must have shape \(8,\)"):
        SGDTwoLayer(two.net, two.X, two.y[:3], two.x0)
    with pytest.raises(ValueError, match=r"SGDTwoLayer: `theta0` must have shape \(12,\)"):
        SGDTwoLayer(two.net, two.X, two.y, two.x0[:5])
    with pytest.raises(ValueError,
                       match=r"SGDTwoLayer: `batch_size` must be an integer in \[1, n\] = \[1, 8\]; got 9"):
        SGDTwoLayer(two.net, two.X, two.y, two.x0, batch_size=9)
    with pytest.raises(ValueError, match="SGDTwoLayer: `v` must have the shape of `x`"):
        two.hessian_vector_product(two.initial_state(2), torch.zeros(2, 3, dtype=torch.float64))
