"""Tests of the dropout plug-in: the discrete step, the SME's drift and diffusion, the contract."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool import EulerMaruyama, NoiseKind, PlatenWeak2, UnsupportedError, solve
from smetool.algorithms.base import Algorithm
from smetool.algorithms.dropout import DropoutAlgorithm, DropoutSME
from smetool.models.dropout_problem import DropoutProblem

F64 = torch.float64


def make_algo(seed=0, m=4, d0=1, n=6, p=0.7, activation="tanh", theta_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d0, generator=gen, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    problem = DropoutProblem(X, y, width=m, keep_prob=p, activation=activation)
    theta0 = theta_scale * torch.randn(problem.n_params, generator=gen, dtype=F64)
    return DropoutAlgorithm(problem, theta0)


def close(actual, expected, rel=1e-10):
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def perturbed_states(algo, P, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = algo.initial_state(P)
    return x + 0.3 * torch.randn(x.shape, generator=gen, dtype=F64)


# ---------------------------------------------------------------------------------- contract
def test_contract_and_initial_state():
    algo = make_algo()
    assert isinstance(algo, Algorithm)
    assert algo.name == "dropout" and algo.sme_orders == (1, 2)
    assert "zhang2024dropout" in [ref.key for ref in algo.references]
    x = algo.initial_state(5)
    assert x.shape == (5, algo.problem.n_params) and x.dtype == F64
    assert torch.equal(x, algo.theta0.expand(5, -1))
    x[0, 0] = 123.0  # a fresh tensor: writing into it leaves θ0 alone
    assert algo.theta0[0] != 123.0
    assert algo.initial_state(2, dtype=torch.float32).dtype == torch.float32
    assert "DropoutAlgorithm(DropoutProblem(" in repr(algo)


def test_default_algorithm():
    algo = DropoutAlgorithm.default(width=3, n_points=5)
    assert algo.problem.width == 3 and algo.theta0.shape == (3 * 3,)


def test_test_functions():
    algo = make_algo()
    x = perturbed_states(algo, 3)
    fns = algo.test_functions()
    j = algo.probe_coordinate()
    assert list(fns) == ["R_S", "L_S", "theta_norm_sq", f"theta[{j}]"]
    for g in fns.values():
        assert g(x).shape == (3,)
    close(fns["R_S"](x), algo.problem.loss(x))
    close(fns["L_S"](x), algo.problem.expected_loss(x))
    close(fns["theta_norm_sq"](x), (x * x).sum(dim=1))
    assert torch.equal(fns[f"theta[{j}]"](x), x[:, j])


def test_probe_coordinate_maximises_the_gd_versus_flow_rate():
    algo = make_algo(seed=3, m=5)
    theta0 = algo.theta0.unsqueeze(0).requires_grad_(True)
    # (∇²L ∇L)_j = ∂/∂θ_j ½‖∇L‖², by autograd as an independent reference.
    (grad,) = torch.autograd.grad(algo.problem.expected_loss(theta0).sum(), theta0, create_graph=True)
    (rate,) = torch.autograd.grad(0.5 * (grad * grad).sum(), theta0)
    assert algo.probe_coordinate() == int(rate[0].abs().argmax())


@pytest.mark.parametrize("order", [1, 2])
def test_diffusion_product_equals_factor_times_increment(order):
    algo = make_algo(seed=4, m=5)
    sde = algo.sme(0.05, order)
    x = perturbed_states(algo, 7)
    gen = torch.Generator().manual_seed(5)
    dW = torch.randn(7, sde.noise_dim, generator=gen, dtype=F64)
    expected = torch.einsum("pdm,pm->pd", sde.diffusion(0.0, x), dW)
    close(sde.diffusion_product(0.0, x, dW), expected)


def test_default_problem_target_scale():
    base = DropoutAlgorithm.default(width=3, n_points=5)
    scaled = DropoutAlgorithm.default(width=3, n_points=5, target_scale=5.0)
    close(scaled.problem.y, 5.0 * base.problem.y)
    assert torch.equal(scaled.theta0, base.theta0)
    with pytest.raises(ValueError, match="`target_scale` must be a finite non-negative number"):
        DropoutAlgorithm.default(target_scale=float("nan"))


# ---------------------------------------------------------------------------------- the SME
@pytest.mark.parametrize("noise", ["factor", "gaussian", "masks", "covariance"])
@pytest.mark.parametrize("order", [1, 2])
def test_sme_shapes_and_kinds(noise, order):
    algo = make_algo()
    P, D, M = 3, algo.problem.n_params, algo.problem.noise_dim
    x = perturbed_states(algo, P)
    sde = algo.sme(0.1, order, noise=noise)
    assert isinstance(sde, DropoutSME) and sde.order == order
    assert sde.drift(0.0, x).shape == (P, D)
    gen = torch.Generator().manual_seed(0)
    if noise == "factor":
        assert sde.noise_kind is NoiseKind.GENERAL and sde.noise_dim == M
        assert sde.diffusion(0.0, x).shape == (P, D, M)
        with pytest.raises(NotImplementedError):
            sde.sample_noise(0.0, x, gen)
    elif noise == "covariance":
        assert sde.noise_kind is NoiseKind.COVARIANCE
        assert sde.diffusion(0.0, x).shape == (P, D, D)
    else:
        assert sde.noise_kind is NoiseKind.SAMPLED
        assert sde.sample_noise(0.0, x, gen).shape == (P, D)
        with pytest.raises(NotImplementedError):
            sde.diffusion(0.0, x)
    assert f"order={order}" in repr(sde) and type(sde.noise).__name__ in repr(sde)


def test_order_one_drift_is_minus_grad_expected_loss():
    algo = make_algo(p=0.6)
    x = perturbed_states(algo, 4).requires_grad_(True)
    (auto,) = torch.autograd.grad(algo.problem.expected_loss(x).sum(), x)
    close(algo.sme(0.1, 1).drift(0.0, x.detach()), -auto)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 4),
    p=st.one_of(st.sampled_from([1.0, 0.5]), st.floats(0.1, 1.0)),
    activation=st.sampled_from(["tanh", "sigmoid", "gelu", "identity", "softplus"]),
    lr=st.floats(1e-3, 0.5),
)
def test_order_two_drift_matches_autograd_of_modified_loss(seed, m, p, activation, lr):
    algo = make_algo(seed, m=m, d0=2, n=5, p=p, activation=activation)
    x = perturbed_states(algo, 3, seed=seed % 1000).requires_grad_(True)
    # −∇(L_S + (lr/4) ‖∇L_S‖²) by double backward through the autograd gradient.
    (g,) = torch.autograd.grad(algo.problem.expected_loss(x).sum(), x, create_graph=True)
    modified = algo.problem.expected_loss(x) + 0.25 * lr * (g * g).sum(dim=1)
    (auto,) = torch.autograd.grad(modified.sum(), x)
    close(algo.sme(lr, 2).drift(0.0, x.detach()), -auto)


@pytest.mark.parametrize("p", [0.9, 0.5, 0.2])
def test_diffusion_reproduces_lr_sigma_exactly(p):
    algo = make_algo(3, m=5, d0=2, p=p)
    x = perturbed_states(algo, 3)
    lr = 0.05
    sigma = algo.problem.noise_covariance(x)
    b = algo.sme(lr, 2, noise="factor").diffusion(0.0, x)
    close(b @ b.transpose(1, 2) / lr, sigma)
    close(algo.sme(lr, 1, noise="covariance").diffusion(0.0, x) / lr, sigma)
    # The Gaussian SAMPLED noise is the factor applied to N(0, I_M) draws, scaled by √lr.
    zeta = algo.sme(lr, 1, noise="gaussian").sample_noise(0.0, x, torch.Generator().manual_seed(4))
    close(zeta / math.sqrt(lr), algo.problem.sample_gaussian_noise(x, torch.Generator().manual_seed(4)))


def test_solvers_on_the_sme():
    algo = make_algo(m=3, n=4)
    x0 = algo.initial_state(4)
    for noise, method in (("factor", PlatenWeak2()), ("gaussian", EulerMaruyama()),
                          ("masks", EulerMaruyama())):
        sol = solve(algo.sme(0.1, 2, noise=noise), x0, (0.0, 0.2), dt=0.05, method=method,
                    generator=0)
        assert sol.xs.shape == (2, 4, algo.problem.n_params)
        assert bool(torch.isfinite(sol.xs).all())
    with pytest.raises(UnsupportedError):
        solve(algo.sme(0.1, 1, noise="masks"), x0, (0.0, 0.2), dt=0.05, method=PlatenWeak2())


def test_no_noise_without_dropout():
    algo = make_algo(p=1.0)
    x = perturbed_states(algo, 2)
    assert algo.sme(0.1, 1).diffusion(0.0, x).abs().max() == 0
    grad = algo.problem.net.loss_grad(x, algo.problem.X, algo.problem.y)[1]
    close(algo.sme(0.1, 1).drift(0.0, x), -grad)


# ---------------------------------------------------------------------------------- statistics
def test_one_discrete_step_has_mean_minus_lr_grad_and_covariance_lr2_sigma():
    # 5 checks at 5 standard errors: false-failure probability below 5 · 5.7e-7 ≈ 3e-6.
    algo = make_algo(8, m=5, d0=1, n=6, p=0.6)
    N, lr = 40_000, 0.1
    x0 = algo.initial_state(N)
    dx = algo.step(x0, lr, torch.Generator().manual_seed(6)) - x0
    mean = -lr * algo.problem.expected_loss_grad(x0[:1])[0]
    sigma = lr * lr * algo.problem.noise_covariance(x0[:1])[0]
    dirs = torch.randn(2, dx.shape[1], generator=torch.Generator().manual_seed(7), dtype=F64)
    for u in dirs:
        proj = dx @ u
        se = float(proj.std()) / math.sqrt(N)
        assert abs(float(proj.mean() - mean @ u)) <= 5 * se
        sq = (proj - mean @ u) ** 2
        assert abs(float(sq.mean() - u @ sigma @ u)) <= 5 * float(sq.std()) / math.sqrt(N)
    cross = ((dx - mean) @ dirs[0]) * ((dx - mean) @ dirs[1])
    se = float(cross.std()) / math.sqrt(N)
    assert abs(float(cross.mean() - dirs[0] @ sigma @ dirs[1])) <= 5 * se


# ---------------------------------------------------------------------------------- errors
def test_warns_for_non_smooth_activation():
    with pytest.warns(UserWarning, match="non-smooth activation 'relu'"):
        make_algo(activation="relu").sme(0.1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_algo(activation="tanh").sme(0.1, 1)


def test_validation():
    algo = make_algo()
    D = algo.problem.n_params
    with pytest.raises(ValueError, match=r"`order` must be 1 or 2; got 3"):
        algo.sme(0.1, 3)
    with pytest.raises(ValueError, match=r"`noise` must be a DropoutNoise or one of factor, "
                                         r"gaussian, masks, covariance; got 'exact'"):
        algo.sme(0.1, 1, noise="exact")
    with pytest.raises(ValueError, match=r"`lr` must be a positive finite number; got -0.1"):
        algo.sme(-0.1, 1)
    with pytest.raises(ValueError, match=r"`n_pairs` must be a positive integer; got 0"):
        algo.sme(0.1, 1, noise="masks", n_pairs=0)
    with pytest.raises(ValueError, match=r"`n_paths` must be a positive integer; got 0"):
        algo.initial_state(0)
    with pytest.raises(ValueError, match=rf"`theta0` must have shape \({D},\); got \(2, {D}\)"):
        DropoutAlgorithm(algo.problem, torch.zeros(2, D, dtype=F64))
    with pytest.raises(ValueError, match=r"`theta0` must be a finite floating-point tensor"):
        DropoutAlgorithm(algo.problem, torch.full((D,), float("nan"), dtype=F64))
    with pytest.raises(TypeError, match=r"`problem` must be a DropoutProblem; got str"):
        DropoutAlgorithm("dropout", torch.zeros(D, dtype=F64))
    with pytest.raises(TypeError, match=r"`problem` must be a DropoutProblem; got NoneType"):
        DropoutSME(None, 0.1)
