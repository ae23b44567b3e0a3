"""Dropout on any nn.Module: the functional wrapper, the exact last-layer closed forms against mask
enumeration and against the two-layer dropout problem, and the sampled estimators' moments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from smetool.models import DropoutProblem, LastLayerDropout, NetDropoutModel, default_problem
from smetool.models.data import digits_data, has_digits, toy_data
from smetool.models.net_dropout_exact import mask_enumeration

DT = torch.float64


def two_layer_pair(width: int = 5, n_points: int = 7, keep_prob: float = 0.9, seed: int = 0):
    """The default dropout problem and the same network as an nn.Module, with the permutation
    ``perm`` such that ``theta_two_layer[:, perm] == theta_module``."""
    problem, theta0 = default_problem(width=width, n_points=n_points, keep_prob=keep_prob, seed=seed)
    m = width
    net = nn.Sequential(nn.Linear(1, m, dtype=DT), nn.Tanh(), nn.Dropout(1.0 - keep_prob),
                        nn.Linear(m, 1, bias=False, dtype=DT))
    a, W = theta0[:m], theta0[m:].reshape(m, 2)
    with torch.no_grad():
        net[0].weight.copy_(W[:, :1])
        net[0].bias.copy_(W[:, 1])
        net[3].weight.copy_(a.unsqueeze(0))
    model = NetDropoutModel(net, problem.X[:, :1], problem.y)
    perm = torch.cat([m + 2 * torch.arange(m), m + 2 * torch.arange(m) + 1, torch.arange(m)])
    return problem, theta0, model, perm


def to_two_layer(theta: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(theta)
    out[:, perm] = theta
    return out


def perturbed(model: NetDropoutModel, n: int, scale: float = 0.2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return model.theta0 + scale * torch.randn(n, model.n_params, generator=gen, dtype=DT)


# ----------------------------------------------------------------------------- the wrapper
def test_keep_probability_is_one_minus_torch_p_and_masks_come_from_the_generator():
    net = nn.Sequential(nn.Linear(3, 4, dtype=DT), nn.Tanh(), nn.Dropout(0.25), nn.Linear(4, 2, dtype=DT))
    model = NetDropoutModel(net, torch.randn(6, 3, dtype=DT), torch.randn(6, 2, dtype=DT))
    assert model.layers[0].keep_prob == 0.75 and model.layers[0].mask_shape == (4,)
    state = torch.random.get_rng_state()
    a = model.sample_masks(5, torch.Generator().manual_seed(3), dtype=DT, device="cpu")
    b = model.sample_masks(5, torch.Generator().manual_seed(3), dtype=DT, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert torch.equal(a[0], b[0])
    assert set(a[0].unique().tolist()) <= {0.0, 1.0 / 0.75}
    assert isinstance(net[2], nn.Dropout)  # the caller's module is not changed


def test_channel_dropout_masks_whole_channels():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, dtype=DT), nn.Dropout2d(0.5), nn.Flatten(),
                        nn.Linear(3 * 16, 2, dtype=DT))
    model = NetDropoutModel(net, torch.randn(4, 1, 4, 4, dtype=DT), torch.tensor([0, 1, 1, 0]),
                            loss="cross_entropy")
    assert model.layers[0].mask_shape == (3, 1, 1)


def test_gradients_match_autograd_on_the_module():
    """The vmapped functional gradient equals plain autograd on the module, path by path."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5, dtype=DT), nn.Tanh(), nn.Dropout(0.3), nn.Linear(5, 2, dtype=DT))
    X, y = torch.randn(8, 3, dtype=DT), torch.randn(8, 2, dtype=DT)
    model = NetDropoutModel(net, X, y)
    theta = perturbed(model, 3)
    masks = model.sample_masks(3, torch.Generator().manual_seed(0), dtype=DT, device="cpu")
    loss, g = model.dropout_loss_grad(theta, masks)
    for p in range(3):
        ref = nn.Sequential(nn.Linear(3, 5, dtype=DT), nn.Tanh(), nn.Linear(5, 2, dtype=DT))
        params = model.unflatten(theta[p])
        with torch.no_grad():
            ref[0].weight.copy_(params["0.weight"])
            ref[0].bias.copy_(params["0.bias"])
            ref[2].weight.copy_(params["3.weight"])
            ref[2].bias.copy_(params["3.bias"])
        h = torch.tanh(ref[0](X)) * masks[0][p]
        out = ref[2](h)
        value = 0.5 * ((out - y) ** 2).sum() / 8
        value.backward()
        want = torch.cat([ref[0].weight.grad.flatten(), ref[0].bias.grad, ref[2].weight.grad.flatten(),
                          ref[2].bias.grad])
        assert torch.allclose(loss[p], value.detach(), rtol=1e-13)
        assert torch.allclose(g[p], want, rtol=1e-12, atol=1e-14)


def test_per_sample_gradients_average_to_the_gradient():
    _, _, model, _ = two_layer_pair()
    theta = perturbed(model, 2)
    ps = model.per_sample_gradients(theta)
    assert ps.shape == (2, model.n_points, model.n_params)
    assert torch.allclose(ps.mean(dim=1), model.loss_grad(theta), atol=1e-14)


# ----------------------------------------------------------------------------- exact closed forms
def test_two_layer_module_reproduces_the_dropout_problem_to_round_off():
    problem, theta0, model, perm = two_layer_pair()
    exact = LastLayerDropout(model)
    assert torch.equal(model.theta0, theta0[perm])
    th = perturbed(model, 3)
    tt = to_two_layer(th, perm)
    assert torch.allclose(exact.expected_loss(th), problem.expected_loss(tt), rtol=1e-12, atol=1e-15)
    assert torch.allclose(exact.expected_loss_grad(th), problem.expected_loss_grad(tt)[:, perm],
                          rtol=1e-12, atol=1e-15)
    F = exact.noise_factor(th)
    assert torch.allclose(F, problem.noise_factor(tt)[:, perm], rtol=1e-12, atol=1e-15)
    sigma = problem.noise_covariance(tt)[:, perm][:, :, perm]
    assert torch.allclose(exact.noise_covariance(th), sigma, rtol=1e-12, atol=1e-15)
    u = torch.randn(th.shape, generator=torch.Generator().manual_seed(2), dtype=DT)
    assert torch.allclose(exact.expected_loss_hvp(th, u),
                          problem.expected_loss_hvp(tt, to_two_layer(u, perm))[:, perm],
                          rtol=1e-11, atol=1e-14)
    z = torch.randn(3, exact.noise_dim, generator=torch.Generator().manual_seed(3), dtype=DT)
    assert torch.allclose(exact.noise_factor_matvec(th, z), torch.einsum("pdm,pm->pd", F, z),
                          atol=1e-14)


@pytest.mark.parametrize("keep_prob", [0.9, 0.4])
def test_deep_multi_output_closed_forms_equal_mask_enumeration(keep_prob):
    """A body of two layers, three outputs, a bias: exact mean and covariance of the dropout
    gradient over all 2^5 masks."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, dtype=DT), nn.Tanh(), nn.Linear(6, 5, dtype=DT), nn.Softplus(),
                        nn.Dropout(1.0 - keep_prob), nn.Linear(5, 3, dtype=DT))
    model = NetDropoutModel(net, torch.randn(9, 4, dtype=DT), torch.randn(9, 3, dtype=DT))
    exact = LastLayerDropout(model)
    th = perturbed(model, 2, scale=0.3)
    mean, cov = mask_enumeration(model, th)
    assert torch.allclose(exact.expected_loss_grad(th), mean, atol=1e-13)
    assert torch.allclose(exact.noise_covariance(th), cov, atol=1e-13)


def test_cnn_closed_forms_equal_mask_enumeration():
    """Last-layer dropout after a convolution and pooling: 2×2×2 = 8 features, 256 masks."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=DT), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Dropout(0.3), nn.Linear(8, 2, dtype=DT))
    model = NetDropoutModel(net, torch.randn(6, 1, 4, 4, dtype=DT), torch.randn(6, 2, dtype=DT))
    exact = LastLayerDropout(model)
    th = perturbed(model, 2, scale=0.3)
    mean, cov = mask_enumeration(model, th)
    assert torch.allclose(exact.expected_loss_grad(th), mean, atol=1e-13)
    assert torch.allclose(exact.noise_covariance(th), cov, atol=1e-13)


def test_closed_forms_refuse_what_they_do_not_cover():
    net = nn.Sequential(nn.Linear(2, 3, dtype=DT), nn.Dropout(0.1), nn.Tanh(), nn.Linear(3, 1, dtype=DT))
    model = NetDropoutModel(net, torch.randn(5, 2, dtype=DT), torch.randn(5, dtype=DT))
    with pytest.raises(ValueError, match="not on the input of the final nn.Linear"):
        LastLayerDropout(model)
    ce = NetDropoutModel(nn.Sequential(nn.Linear(2, 3, dtype=DT), nn.Dropout(0.1), nn.Linear(3, 2, dtype=DT)),
                         torch.randn(5, 2, dtype=DT), torch.tensor([0, 1, 0, 1, 1]), loss="cross_entropy")
    with pytest.raises(ValueError, match="the loss is 'cross_entropy'"):
        LastLayerDropout(ce)


# ----------------------------------------------------------------------------- sampled estimators
def sampled_cnn() -> NetDropoutModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=DT), nn.Tanh(), nn.Dropout2d(0.2), nn.Flatten(),
                        nn.Linear(2 * 16, 3, dtype=DT), nn.Tanh(), nn.Dropout(0.5), nn.Linear(3, 2, dtype=DT))
    return NetDropoutModel(net, torch.randn(5, 1, 4, 4, dtype=DT), torch.tensor([0, 1, 1, 0, 1]),
                           loss="cross_entropy")


def test_mask_gradients_are_unbiased_for_two_layers_and_cross_entropy():
    """The mean of 40,000 dropout gradients against the exact mean over all 2^5 masks.

    Per coordinate |z| ≤ 4.5 with a Bonferroni bound: P(false failure) ≤ D · 6.8e-6 < 1e-2 over
    the D = 33 + … coordinates with a non-zero variance (fixed seed)."""
    model = sampled_cnn()
    th = model.theta0.unsqueeze(0)
    mean, cov = mask_enumeration(model, th)
    K = 40_000
    g = model.mask_gradient_samples(th, K, torch.Generator().manual_seed(0))[:, 0]
    sd = torch.sqrt(torch.diagonal(cov[0]) / K)
    live = sd > 1e-12
    assert torch.allclose(g.mean(dim=0)[~live], mean[0][~live], atol=1e-12)
    z = (g.mean(dim=0)[live] - mean[0][live]) / sd[live]
    assert float(z.abs().max()) < 4.5


def test_toy_and_digits_data():
    toy = toy_data(8)
    assert toy.X.shape == (8, 1) and toy.y.shape == (8, 1)
    if not has_digits():
        with pytest.raises(ImportError, match="scikit-learn"):
            digits_data(10)
        return
    d = digits_data(20)
    assert d.X.shape == (20, 64) and d.y.shape == (20, 10) and float(d.X.max()) <= 1.0
    assert d.y.argmax(dim=1).tolist()[:10] == list(range(10))
    img = digits_data(20, image=True, one_hot=False)
    assert img.X.shape == (20, 1, 8, 8) and img.y.dtype == torch.long
    with pytest.raises(ValueError, match="`n_samples` must be at most 1797"):
        digits_data(5000)


@pytest.mark.parametrize("make, match", [
    (lambda: NetDropoutModel(nn.Linear(2, 1), torch.randn(3, 2), torch.randn(3)),
     "must contain an nn.Dropout layer"),
    (lambda: NetDropoutModel(nn.Sequential(nn.Dropout(1.0), nn.Linear(2, 1)), torch.randn(3, 2),
                             torch.randn(3)), "drops everything"),
    (lambda: NetDropoutModel(nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 1)), torch.randn(3, 2),
                             torch.randn(4)), "len\\(y\\) == len\\(X\\)"),
    (lambda: NetDropoutModel(nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 1)), torch.randn(3, 2),
                             torch.randn(3), loss="hinge"), "`loss` must be one of mse, cross_entropy"),
    (lambda: NetDropoutModel(nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 2)), torch.randn(3, 2),
                             torch.randn(3), loss="cross_entropy"), "integer class labels"),
    (lambda: NetDropoutModel(nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 2)), torch.randn(3, 2),
                             torch.randn(3, 3)), "output shape per example"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_theta_and_masks_are_checked():
    _, _, model, _ = two_layer_pair()
    with pytest.raises(ValueError, match=r"`theta` must have shape \(paths, 15\)"):
        model.loss(torch.zeros(2, 3, dtype=DT))
    with pytest.raises(ValueError, match="`masks` must be a tuple of tensors of shapes"):
        model.dropout_loss_grad(torch.zeros(2, 15, dtype=DT), (torch.ones(2, 4, dtype=DT),))
    with pytest.raises(ValueError, match="`max_units`"):
        mask_enumeration(model, torch.zeros(1, 15, dtype=DT), max_units=3)
    assert isinstance(DropoutProblem, type) and math.isfinite(float(model.loss(model.theta0[None])[0]))
