"""Tests of the dropout closed forms against exact enumeration of all 2^m dropout masks.

Enumeration is the ground truth: every dropout expectation (loss, gradient mean, gradient
covariance, second moment) is a finite weighted sum over the 2^m masks, computed here with the
plain dropout gradient and no closed form.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool.models.dropout_problem import DropoutProblem, GradSecondMoment, default_problem

F64 = torch.float64
SMOOTH = ["tanh", "sigmoid", "gelu", "identity"]


def enumerate_masks(problem: DropoutProblem, theta: torch.Tensor):
    """Exact mask averages: loss (P,), gradient (P, D), covariance (P, D, D), E‖grad‖² (P,)."""
    m, p = problem.width, problem.keep_prob
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=theta.dtype)
    kept = masks.sum(dim=1)
    weight = p**kept * (1.0 - p) ** (m - kept)
    P, J = theta.shape[0], masks.shape[0]
    loss, grad = problem.dropout_loss_grad(theta.repeat_interleave(J, 0), (masks / p).repeat(P, 1))
    loss, grad = loss.reshape(P, J), grad.reshape(P, J, -1)
    mean_loss = (weight * loss).sum(dim=1)
    mean_grad = torch.einsum("j,pjd->pd", weight, grad)
    dev = grad - mean_grad.unsqueeze(1)
    cov = torch.einsum("j,pjd,pje->pde", weight, dev, dev)
    second = torch.einsum("j,pjd->p", weight, grad * grad)
    return mean_loss, mean_grad, cov, second


def close(actual, expected, rel=1e-10):
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def make_problem(seed, m, d0, n, p, activation, bias=True, theta_scale=1.0, paths=2):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d0, generator=gen, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    problem = DropoutProblem(X, y, width=m, keep_prob=p, activation=activation, bias=bias)
    theta = theta_scale * torch.randn(paths, problem.n_params, generator=gen, dtype=F64)
    return problem, theta


keep_probs = st.one_of(st.sampled_from([1.0, 0.5]), st.floats(0.05, 1.0))


# ---------------------------------------------------------------------------------- exact tests
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 6),
    d0=st.integers(1, 2),
    n=st.integers(1, 6),
    p=keep_probs,
    activation=st.sampled_from(SMOOTH),
    bias=st.booleans(),
    theta_scale=st.floats(0.1, 2.0),
)
def test_closed_forms_equal_mask_enumeration(seed, m, d0, n, p, activation, bias, theta_scale):
    problem, theta = make_problem(seed, m, d0, n, p, activation, bias, theta_scale)
    mean_loss, mean_grad, cov, second = enumerate_masks(problem, theta)
    close(problem.expected_loss(theta), mean_loss)
    close(problem.loss(theta) + problem.implicit_regularizer(theta), mean_loss)
    close(problem.expected_loss_grad(theta), mean_grad)
    close(problem.noise_covariance(theta), cov)
    F = problem.noise_factor(theta)
    assert F.shape == (2, problem.n_params, problem.noise_dim)
    close(F @ F.transpose(1, 2), cov)
    moment = problem.grad_second_moment(theta)
    close(moment.total, second)
    close(moment.grad_norm_sq, (mean_grad * mean_grad).sum(dim=1))
    close(moment.trace_sigma, torch.diagonal(cov, dim1=1, dim2=2).sum(dim=1))


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_enumeration_width_eight(p):
    problem, theta = make_problem(7, 8, 1, 5, p, "tanh", paths=3)
    mean_loss, mean_grad, cov, second = enumerate_masks(problem, theta)
    close(problem.expected_loss(theta), mean_loss)
    close(problem.expected_loss_grad(theta), mean_grad)
    close(problem.noise_covariance(theta), cov)
    F = problem.noise_factor(theta)
    close(F @ F.transpose(1, 2), cov)
    close(problem.grad_second_moment(theta).total, second)


def test_no_dropout_gives_plain_gradient_descent():
    problem, theta = make_problem(3, 4, 2, 6, 1.0, "tanh")
    grad = problem.net.loss_grad(theta, problem.X, problem.y)[1]
    close(problem.expected_loss_grad(theta), grad)
    assert problem.implicit_regularizer(theta).abs().max() == 0
    assert problem.noise_factor(theta).abs().max() == 0
    assert problem.noise_covariance(theta).abs().max() == 0
    gen = torch.Generator().manual_seed(0)
    assert problem.sample_gaussian_noise(theta, gen).abs().max() == 0
    assert problem.sample_mask_noise(theta, gen).abs().max() == 0
    close(problem.step(theta, 0.1, gen), theta - 0.1 * grad)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 5),
    p=keep_probs,
    activation=st.sampled_from(SMOOTH + ["softplus", "relu"]),
)
def test_expected_loss_grad_matches_autograd(seed, m, p, activation):
    problem, theta = make_problem(seed, m, 2, 5, p, activation)
    theta = theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(problem.expected_loss(theta).sum(), theta)
    close(problem.expected_loss_grad(theta.detach()), auto)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 5),
    p=keep_probs,
    activation=st.sampled_from(SMOOTH + ["softplus"]),
)
def test_expected_loss_hvp_matches_autograd(seed, m, p, activation):
    problem, theta = make_problem(seed, m, 2, 5, p, activation, paths=3)
    vec = torch.randn(theta.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    x = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(problem.expected_loss(x).sum(), x, create_graph=True)
    (auto,) = torch.autograd.grad((g * vec).sum(), x)
    with torch.no_grad():
        close(problem.expected_loss_hvp(theta, vec), auto)


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.3, 0.05])
def test_mask_moments(p):
    problem, _ = make_problem(0, 2, 1, 3, p, "tanh")
    values = torch.tensor([1.0 / p - 1.0, -1.0], dtype=F64)  # η for b = 1, 0
    probs = torch.tensor([p, 1.0 - p], dtype=F64)
    for k, ref in ((2, problem.v), (3, problem.kappa3), (4, problem.kappa4)):
        assert math.isclose(float((probs * values**k).sum()), ref, rel_tol=1e-12, abs_tol=1e-15)
    # The two-point law makes Cov(η, η²) rank one, which is why M = m(m+1)/2 columns suffice.
    c = (1.0 - 2.0 * p) / p
    assert math.isclose(problem.kappa3, c * problem.v, rel_tol=1e-12, abs_tol=1e-15)
    excess = problem.kappa4 - problem.v**2
    assert math.isclose(excess, c * c * problem.v, rel_tol=1e-12, abs_tol=1e-15)
    assert problem.noise_dim == 3


def test_gaussian_sampler_is_the_factor_applied_to_normals():
    problem, theta = make_problem(11, 5, 2, 7, 0.6, "tanh", paths=4)
    zeta = problem.sample_gaussian_noise(theta, torch.Generator().manual_seed(5))
    z = torch.randn(4, 15, generator=torch.Generator().manual_seed(5), dtype=F64)
    Fz = torch.einsum("pdm,pm->pd", problem.noise_factor(theta), z)
    close(zeta, Fz)
    close(problem.noise_factor_matvec(theta, z), Fz)


def test_step_is_dropout_gradient_descent_with_one_mask_per_path():
    problem, theta = make_problem(2, 5, 1, 6, 0.7, "tanh", paths=6)
    new = problem.step(theta, 0.05, torch.Generator().manual_seed(9))
    scale = problem.sample_scale(6, torch.Generator().manual_seed(9), dtype=F64)
    _, grad = problem.dropout_loss_grad(theta, scale)
    close(new, theta - 0.05 * grad)
    assert set(scale.unique().tolist()) <= {0.0, 1.0 / 0.7}


def test_dtype_and_data_follow_theta():
    problem, theta = make_problem(1, 3, 1, 4, 0.8, "tanh")
    t32 = theta.float()
    assert problem.expected_loss_grad(t32).dtype == torch.float32
    assert problem.noise_factor(t32).dtype == torch.float32
    gen = torch.Generator().manual_seed(0)
    assert problem.sample_mask_noise(t32, gen).dtype == torch.float32
    assert problem.step(t32, 0.1, torch.Generator().manual_seed(0)).dtype == torch.float32
    assert problem.sample_scale(3, torch.Generator(), dtype=torch.float32).dtype == torch.float32


def test_grad_second_moment_result_object():
    problem, theta = make_problem(4, 3, 1, 4, 0.8, "tanh")
    moment = problem.grad_second_moment(theta)
    assert isinstance(moment, GradSecondMoment)
    d = moment.to_dict()
    json.dumps(d)
    assert d["total"] == pytest.approx((moment.grad_norm_sq + moment.trace_sigma).tolist())
    assert "trace_sigma=<2 paths" in repr(moment)
    assert "grad_norm_sq=" in repr(problem.grad_second_moment(theta[:1]))
    with pytest.raises(AttributeError):
        moment.grad_norm_sq = moment.trace_sigma


def test_default_problem():
    problem, theta0 = default_problem()
    assert theta0.shape == (48,) and theta0.dtype == F64
    assert (problem.width, problem.n_points, problem.keep_prob) == (16, 16, 0.9)
    assert problem.net.activation.name == "tanh"
    x = problem.X[:, 0]
    assert torch.equal(problem.X[:, 1], torch.ones(16, dtype=F64))
    close(problem.y, 0.5 * torch.relu(-x - 1 / 3) + 0.5 * torch.relu(x - 1 / 3))
    _, again = default_problem()
    assert torch.equal(theta0, again)
    small, t = default_problem(torch.float32, n_points=5, width=3, keep_prob=0.5, a_std=0.0, seed=1)
    assert (small.n_points, small.width, small.keep_prob, t.dtype) == (5, 3, 0.5, torch.float32)
    assert t[:3].abs().max() == 0
    assert "keep_prob=0.9" in repr(problem)


# ---------------------------------------------------------------------------------- statistics
# Each check compares a Monte-Carlo mean with its exact value and allows 5 standard errors; with
# 31 such checks the false-failure probability is below 31 · 5.7e-7 ≈ 1.8e-5 (normal tails).
N_DRAWS = 40_000
Z_TOL = 5.0


def _check_mean(samples: torch.Tensor, exact: float, what: str):
    se = float(samples.std()) / math.sqrt(samples.numel())
    err = float(samples.mean()) - exact
    assert abs(err) <= Z_TOL * se + 1e-12, f"{what}: error {err:.3g} is {abs(err) / se:.1f} SE"


@pytest.mark.parametrize("method,n_pairs", [("gaussian", 1), ("masks", 1), ("masks", 3)])
def test_sampler_covariance_matches_sigma(method, n_pairs):
    problem, theta = make_problem(21, 4, 1, 6, 0.6, "tanh", paths=1)
    sigma = problem.noise_covariance(theta)[0]
    D = problem.n_params
    dirs = torch.randn(3, D, generator=torch.Generator().manual_seed(1), dtype=F64)
    top = torch.linalg.eigh(sigma).eigenvectors[:, -1]
    dirs = torch.cat([dirs / dirs.norm(dim=1, keepdim=True), top.unsqueeze(0)])
    gen = torch.Generator().manual_seed(2)
    if method == "gaussian":
        zeta = problem.sample_gaussian_noise(theta.expand(N_DRAWS, D), gen)
    else:
        zeta = problem.sample_mask_noise(theta.expand(N_DRAWS, D), gen, n_pairs)
    proj = zeta @ dirs.T  # (N, 4)
    for j in range(4):
        _check_mean(proj[:, j], 0.0, f"{method} mean along u{j}")
        _check_mean(proj[:, j] ** 2, float(dirs[j] @ sigma @ dirs[j]), f"{method} u{j}ᵀΣu{j}")
    _check_mean(proj[:, 0] * proj[:, 3], float(dirs[0] @ sigma @ dirs[3]), f"{method} u0ᵀΣu3")
    if method == "gaussian":
        # Gaussian fourth moment 3 (uᵀΣu)² (the mask sampler is not Gaussian).
        s = float(dirs[3] @ sigma @ dirs[3])
        _check_mean(proj[:, 3] ** 4, 3.0 * s * s, "gaussian fourth moment")


def test_dropout_gradient_mean_and_covariance_statistically():
    problem, theta = make_problem(5, 4, 1, 6, 0.7, "sigmoid", paths=1)
    D = problem.n_params
    scale = problem.sample_scale(N_DRAWS, torch.Generator().manual_seed(3), dtype=F64)
    _, grad = problem.dropout_loss_grad(theta.expand(N_DRAWS, D), scale)
    mean = problem.expected_loss_grad(theta)[0]
    sigma = problem.noise_covariance(theta)[0]
    u = torch.randn(D, generator=torch.Generator().manual_seed(4), dtype=F64)
    proj = (grad - mean) @ u
    _check_mean(grad @ u, float(mean @ u), "dropout gradient mean")
    _check_mean(proj**2, float(u @ sigma @ u), "dropout gradient covariance")
    assert abs(float(scale.mean()) - 1.0) <= Z_TOL * float(scale.std()) / math.sqrt(scale.numel())


# ---------------------------------------------------------------------------------- validation
def _data():
    return torch.zeros(4, 1, dtype=F64), torch.zeros(4, dtype=F64)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(keep_prob=0.0), ValueError, r"`keep_prob` must be in \(0, 1\]; got 0.0"),
        (dict(keep_prob=1.5), ValueError, r"`keep_prob` must be in \(0, 1\]; got 1.5"),
        (dict(keep_prob=float("nan")), ValueError, r"`keep_prob` must be in \(0, 1\]"),
        (dict(keep_prob="0.9"), TypeError, r"`keep_prob` must be a real number"),
        (dict(keep_prob=True), TypeError, r"`keep_prob` must be a real number"),
        (dict(width=0), ValueError, r"`width` must be a positive integer; got 0"),
        (dict(width=2.5), ValueError, r"`width` must be a positive integer; got 2.5"),
        (dict(activation="swish"), ValueError, r"`activation` must be one of"),
    ],
)
def test_constructor_validation(kwargs, exc, match):
    X, y = _data()
    args = dict(width=2, keep_prob=0.9) | kwargs
    with pytest.raises(exc, match=match):
        DropoutProblem(X, y, **args)


@pytest.mark.parametrize(
    "X,y,match",
    [
        (torch.zeros(4), torch.zeros(4), r"`X` must be 2-D, \(n, d0\); got shape \(4,\)"),
        (torch.zeros(4, 1), torch.zeros(3),
         r"`y` must be 1-D with len\(y\) == len\(X\) = 4; got shape \(3,\)"),
        (torch.zeros(4, 1), torch.zeros(4, 1), r"`y` must be 1-D"),
        (torch.zeros(0, 1), torch.zeros(0), r"`X` must have at least one point"),
        (torch.tensor([[float("nan")]]), torch.zeros(1), r"`X` must be finite"),
        (torch.zeros(1, 1), torch.tensor([float("inf")]), r"`y` must be finite"),
    ],
)
def test_data_validation(X, y, match):
    with pytest.raises(ValueError, match=match):
        DropoutProblem(X, y, width=2, keep_prob=0.9)


def test_method_validation():
    X, y = _data()
    problem = DropoutProblem(X, y, width=2, keep_prob=0.9)
    theta = torch.zeros(3, problem.n_params, dtype=F64)
    gen = torch.Generator()
    with pytest.raises(ValueError, match=r"`theta` must have shape \(paths, 6\); got \(3, 5\)"):
        problem.expected_loss(theta[:, :5])
    with pytest.raises(TypeError, match=r"`theta` must be a floating-point Tensor"):
        problem.loss(torch.zeros(3, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"`scale` must have shape \(3, 2\); got \(3, 3\)"):
        problem.dropout_loss_grad(theta, torch.ones(3, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"`vec` must have the shape of `theta`, \(3, 6\)"):
        problem.expected_loss_hvp(theta, theta[0])
    with pytest.raises(ValueError, match=r"`z` must have shape \(3, 3\); got \(3, 2\)"):
        problem.noise_factor_matvec(theta, torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"`n_pairs` must be a positive integer; got 0"):
        problem.sample_mask_noise(theta, gen, n_pairs=0)
    with pytest.raises(ValueError, match=r"`n_paths` must be a positive integer; got 0"):
        problem.sample_scale(0, gen)
    for lr in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=r"`lr` must be a positive finite number"):
            problem.step(theta, lr, gen)
    with pytest.raises(ValueError, match=r"`n_points` must be a positive integer; got 0"):
        default_problem(n_points=0)
    with pytest.raises(ValueError, match=r"`a_std` must be a finite non-negative number; got -1"):
        default_problem(a_std=-1)


@pytest.mark.parametrize("m, activation", [(9, "tanh"), (10, "sigmoid")])
def test_closed_forms_equal_mask_enumeration_at_the_largest_widths(m, activation):
    """The issue's bound m ≤ 10 reached: 512 and 1,024 masks, float64, 1e-10."""
    problem, theta = make_problem(3, m, 2, 5, 0.7, activation, True, 1.0)
    mean_loss, mean_grad, cov, second = enumerate_masks(problem, theta)
    close(problem.expected_loss(theta), mean_loss)
    close(problem.expected_loss_grad(theta), mean_grad)
    close(problem.noise_covariance(theta), cov)
