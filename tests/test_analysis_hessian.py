"""Exact Hessians of R_S, R_1 and L_S against torch.func.hessian (float64, batched)."""

import pytest
import torch
from torch.func import hessian, vmap

from smetool.models.dropout_problem import default_problem
from smetool.models.two_layer import TwoLayerNet
from smetool.models.two_layer_hessian import (
    expected_loss_hessian,
    implicit_regularizer_hessian,
    loss_hessian,
    output_jacobian,
)

SMOOTH = ["tanh", "sigmoid", "softplus", "gelu", "identity"]


def _setup(activation, P=4, d=3, m=5, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = TwoLayerNet(d, m, activation)
    theta = torch.randn(P, net.n_params, generator=g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return net, theta, X, y


def _r1(net, X, p):
    v = (1 - p) / p

    def f(t):
        h = net.terms(t.unsqueeze(0), X).h
        return 0.5 * v * (h * h).sum() / X.shape[0]

    return f


@pytest.mark.parametrize("activation", SMOOTH)
def test_loss_hessian_matches_autograd(activation):
    net, theta, X, y = _setup(activation)
    H = loss_hessian(net, theta, X, y)
    ref = vmap(hessian(lambda t: net.loss(t.unsqueeze(0), X, y)[0]))(theta)
    assert H.shape == (4, net.n_params, net.n_params)
    assert torch.allclose(H, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("p", [0.5, 0.9])
def test_regularizer_and_expected_hessian_match_autograd(activation, p):
    net, theta, X, y = _setup(activation, seed=1)
    ref1 = vmap(hessian(_r1(net, X, p)))(theta)
    assert torch.allclose(implicit_regularizer_hessian(net, theta, X, p), ref1, rtol=0, atol=1e-10)
    refL = ref1 + vmap(hessian(lambda t: net.loss(t.unsqueeze(0), X, y)[0]))(theta)
    assert torch.allclose(expected_loss_hessian(net, theta, X, y, p), refL, rtol=0, atol=1e-10)


def test_relu_away_from_kinks_matches_autograd():
    # ReLU's σ'' is 0 except at the kink, where autograd and the closed form both use 0.
    net, theta, X, y = _setup("relu", seed=2)
    ref = vmap(hessian(lambda t: net.loss(t.unsqueeze(0), X, y)[0]))(theta)
    assert torch.allclose(loss_hessian(net, theta, X, y), ref, rtol=0, atol=1e-10)


def test_expected_loss_hessian_matches_autograd_and_the_landscape():
    problem, theta0 = default_problem()
    g = torch.Generator().manual_seed(3)
    theta = theta0 + 0.1 * torch.randn(3, theta0.numel(), generator=g, dtype=torch.float64)
    ref = vmap(hessian(lambda t: problem.expected_loss(t.unsqueeze(0))[0]))(theta)
    X, y, p = problem.X, problem.y, problem.keep_prob
    H = expected_loss_hessian(problem.net, theta, X, y, p)
    assert torch.allclose(H, ref, rtol=0, atol=1e-10)
    parts = loss_hessian(problem.net, theta, X, y) + implicit_regularizer_hessian(
        problem.net, theta, X, p)
    assert torch.allclose(parts, H, rtol=0, atol=1e-12)
    # the problem's landscape (R_S) is the first part, and its Hessian-vector products follow
    assert torch.equal(problem.hessian_matrix(theta), loss_hessian(problem.net, theta, X, y))


def test_no_dropout_regularizer_vanishes_and_hessian_symmetric():
    net, theta, X, y = _setup("tanh", seed=4)
    assert torch.count_nonzero(implicit_regularizer_hessian(net, theta, X, 1.0)) == 0
    H = loss_hessian(net, theta, X, y)
    assert torch.equal(H, H.transpose(1, 2))


def test_output_jacobian_matches_autograd():
    net, theta, X, _ = _setup("gelu", seed=5)
    J = output_jacobian(net, net.terms(theta, X), X)
    ref = vmap(torch.func.jacrev(lambda t: net.forward(t.unsqueeze(0), X)[0]))(theta)
    assert torch.allclose(J, ref, rtol=0, atol=1e-12)


def test_validation_messages():
    net, theta, X, y = _setup("tanh")
    with pytest.raises(ValueError, match="`keep_prob` must be in \\(0, 1\\]; got 1.5"):
        implicit_regularizer_hessian(net, theta, X, 1.5)
    with pytest.raises(ValueError, match="`X` must have shape"):
        loss_hessian(net, theta, X[:, :2], y)
    with pytest.raises(ValueError, match="`y` must have shape"):
        loss_hessian(net, theta, X, y[:3])
    with pytest.raises(ValueError, match="`theta` must have shape"):
        loss_hessian(net, theta[:, :4], X, y)
