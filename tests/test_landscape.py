"""The landscape contract, checked on every model that implements it against autograd of its own
loss (exact references): gradients, Hessian–vector products and dense Hessians, unbiased minibatch
gradients, reproducible initial points; and the plug-ins' analysis declarations."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, vmap

from smetool.algorithms import (
    AnalysisSpec,
    GradientDescent,
    GradientFlow,
    HasLandscape,
    MinibatchSGD,
    PluginSpec,
    SGDLeastSquares,
    get_plugin,
    plugins,
)
from smetool.algorithms.sam import default_problem as sam_problem
from smetool.analysis import initial_points
from smetool.models import NormalisedQuadratic
from smetool.models.landscape import FiniteSum, Landscape
from smetool.models.networks import builtin_network

F64 = dict(dtype=torch.float64)


def _landscapes():
    two_layer, _ = builtin_network("two-layer", batch_size=3)
    mlp, _ = builtin_network("mlp", "toy", width=5, batch_size=4)
    return {
        "two-layer": two_layer,
        "mlp": mlp,
        "noisy quadratic": sam_problem(0.5),
        "normalised quadratic": NormalisedQuadratic([[1.0, 0.2, 0], [0.2, 0, 0], [0, 0, -1.0]],
                                                    [0.1, 0, 0], 0.25),
        "least squares": SGDLeastSquares.default(batch_size=2),
    }


LANDSCAPES = _landscapes()


@pytest.fixture(params=list(LANDSCAPES))
def landscape(request) -> Landscape:
    return LANDSCAPES[request.param]


def _points(landscape: Landscape, n: int = 3) -> torch.Tensor:
    return initial_points(landscape, n, seed=7)


def test_gradient_hvp_and_hessian_agree_with_autograd_of_the_loss(landscape):
    theta = _points(landscape)
    one = lambda t: landscape.loss(t.unsqueeze(0))[0]  # noqa: E731
    assert torch.allclose(landscape.gradient(theta), vmap(grad(one))(theta), atol=1e-11)
    H = vmap(hessian(one))(theta)
    assert torch.allclose(landscape.hessian_matrix(theta), H, atol=1e-10)
    V = torch.randn(3, 4, theta.shape[1], generator=torch.Generator().manual_seed(1), **F64)
    assert torch.allclose(landscape.hvp(theta, V), torch.einsum("pde,pse->psd", H, V),
                          atol=1e-10)


def test_minibatch_gradients_are_unbiased(landscape):
    theta = _points(landscape, 2)
    g = torch.Generator().manual_seed(2)
    n = 4000
    rows = theta.repeat_interleave(n, dim=0)
    batch = landscape.draw_minibatch(rows.shape[0], g, dtype=rows.dtype, device=rows.device)
    samples = landscape.minibatch_gradient(rows, batch).reshape(2, n, -1)
    mean, se = samples.mean(1), samples.std(1) / n**0.5
    # every coordinate within 5 standard errors of ∇f (false failure < 1e-5 per coordinate)
    assert bool(((mean - landscape.gradient(theta)).abs() <= 5 * se + 1e-12).all())
    assert bool((se > 0).any())  # the noise is there
    if isinstance(landscape, FiniteSum):  # the uniform weights are the full gradient, exactly
        w = torch.full((2, landscape.n_points), 1 / landscape.n_points, **F64)
        assert torch.allclose(landscape.weighted_gradient(theta, w), landscape.gradient(theta),
                              atol=1e-14)


def test_initial_points_are_reproducible_and_distinct(landscape):
    a, b = _points(landscape), _points(landscape)
    assert torch.equal(a, b) and a.shape == (3, landscape.n_params) and a.dtype == torch.float64
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, initial_points(landscape, 3, seed=8))
    units = landscape.units(a)
    assert (units is None) == (landscape.label in ("noisy quadratic", "normalised quadratic",
                                                   "least squares"))


def test_the_built_in_mlp_inits_are_the_modules_own():
    # random_init draws like builtin_nets.mlp(seed=s): layer by layer, N(0, 1/fan_in)
    from smetool.models.builtin_nets import mlp

    landscape, _ = builtin_network("mlp", "toy", width=5)
    theta = landscape.random_init(torch.Generator().manual_seed(3))
    module = mlp(1, 5, 1, keep_prob=0.9, out_bias=False, seed=3)
    assert torch.equal(theta, torch.cat([p.detach().reshape(-1) for p in module.parameters()]))


def test_gradient_flow_order_two_descends_the_modified_loss():
    landscape = LANDSCAPES["mlp"]
    theta, lr = _points(landscape), 0.3
    one = lambda t: landscape.loss(t.unsqueeze(0))[0]  # noqa: E731

    def modified(t):
        g = grad(one)(t)
        return one(t) + lr / 4 * (g * g).sum()

    drift = GradientFlow(landscape, lr, 2).drift(0.0, theta)
    assert torch.allclose(drift, -vmap(grad(modified))(theta), atol=1e-11)
    gd = GradientDescent(landscape, theta[0])
    assert [c.name for c in gd.negative_controls(lr, 2)] == ["order-1 SME"]
    assert torch.equal(gd.step(theta, lr, torch.Generator()),
                       theta - lr * landscape.gradient(theta))


def test_every_analysable_plugin_builds_on_its_problem_and_on_a_network():
    network, _ = builtin_network("mlp", "toy", width=5, batch_size=4)
    theta0 = initial_points(network, 1)[0]
    analysable = {n: s for n, s in plugins().items() if s.analysis is not None}
    assert set(analysable) == {"dropout", "dropout-net", "sgd", "sam", "usam", "signsgd",
                               "sgd-wd"}
    for name, spec in analysable.items():
        own = spec.build_for_analysis()
        assert isinstance(own, HasLandscape) and isinstance(own.landscape(), Landscape), name
        if not spec.analysis.on_networks:
            continue
        rule = spec.build_on(network, theta0)
        assert isinstance(rule, HasLandscape) and rule.landscape() is network, name
        x = rule.initial_state(3)
        assert torch.equal(x[0], theta0)
        step = rule.step(x, 0.01, torch.Generator().manual_seed(0))
        assert step.shape == x.shape and bool(torch.isfinite(step).all()), name
    # the closed forms stay on the test problems and say so
    sam = get_plugin("sam").build_on(network, theta0)
    assert not sam.has_exact_mean()
    with pytest.raises(ValueError, match="sam on mlp \\(toy\\): the exact mean step and the SME"):
        sam.sme(0.1)
    with pytest.raises(ValueError, match="the SGD SME needs the minibatch gradient covariance"):
        MinibatchSGD(network, theta0).sme(0.1)
    assert get_plugin("sam").build_on(network, theta0).rho == 0.05  # the network default


def test_analysis_declarations_are_checked():
    spec = get_plugin("sgd")
    with pytest.raises(ValueError, match="AnalysisSpec: `lr` must be a positive finite number; got 0"):
        AnalysisSpec(lr=0.0, steps=1)
    with pytest.raises(ValueError, match="`network_lr` needs `on_landscape`"):
        AnalysisSpec(lr=0.1, steps=1, network_lr=0.1)
    kw = dict(name="x", factory=spec.factory, description="d", orders=(1,), lrs=(0.1, 0.05),
              horizon=1.0, n_paths=10, options=spec.options)
    with pytest.raises(ValueError, match="`analysis.network_options` has 'rho'"):
        PluginSpec(**kw, algorithm=SGDLeastSquares,
                   analysis=AnalysisSpec(lr=0.1, steps=1, network_options={"rho": 1.0},
                                         on_landscape=lambda *a, **k: None))
    with pytest.raises(ValueError, match="`analysis` needs an `algorithm` class with a landscape"):
        PluginSpec(**kw, analysis=AnalysisSpec(lr=0.1, steps=1))
    with pytest.raises(ValueError, match="runs on its own problem only"):
        get_plugin("dropout-net").build_on(LANDSCAPES["mlp"], torch.zeros(1))
