"""dropout_net refuses what its SME cannot model, names the module, and says what it models
(issue 25): functional dropout, batch normalisation, alpha dropout, channel dropout on another
layout than torch's, and any module that differs between train() and eval()."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smetool.algorithms.dropout_net import builtin_problem, dropout_net
from smetool.cli import main

DT = torch.float64


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 3, generator=g, dtype=DT), torch.randn(12, generator=g, dtype=DT)


def seq(*modules: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*modules).to(DT)


class FunctionalDropout(nn.Module):
    """The reproduction of the issue: F.dropout inside forward (plus one nn.Dropout)."""

    def __init__(self, follow_mode: bool):
        super().__init__()
        self.a, self.drop, self.b = nn.Linear(3, 8), nn.Dropout(0.1), nn.Linear(8, 1)
        self.follow_mode = follow_mode

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = F.dropout(h, 0.3, training=self.training) if self.follow_mode else F.dropout(h, 0.3)
        return self.b(self.drop(h))


class Block(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class Doubles(nn.Module):
    """Deterministic, but another function in training mode."""

    def forward(self, x):
        return 2 * x if self.training else x


class Noisy(nn.Module):
    def forward(self, x):
        return x + 0.01 * torch.randn_like(x)


class BatchNormCall(nn.Module):
    def forward(self, x):
        return F.batch_norm(x, None, None, training=True)


@pytest.mark.parametrize("follow_mode", [True, False])
def test_functional_dropout_in_forward_is_refused(follow_mode, data):
    # On main: with training=self.training it was silently ignored (the copy runs in eval mode);
    # with the default training=True the first step died with a raw vmap RuntimeError.
    net = FunctionalDropout(follow_mode).to(DT)
    with pytest.raises(ValueError, match=r"the network's own forward\(\) calls dropout\(\).*"
                       r"use an nn.Dropout module"):
        dropout_net(net, *data)


@pytest.mark.parametrize(("module", "message"), [
    (nn.BatchNorm1d(8), r"module '1\.inner': BatchNorm1d normalises with batch statistics"),
    (nn.AlphaDropout(0.2), r"module '1\.inner': AlphaDropout rescales and shifts"),
    (nn.FeatureAlphaDropout(0.2), r"module '1\.inner': FeatureAlphaDropout rescales"),
    (nn.Sequential(nn.Unflatten(1, (4, 2)), nn.InstanceNorm1d(4, track_running_stats=True),
                   nn.Flatten()), r"module '1\.inner\.1': InstanceNorm1d with "
     r"track_running_stats=True"),
    (Doubles(), r"module '1\.inner': the network's output differs between train\(\) and eval\(\)"),
    (Noisy(), r"forward\(\) of module '1\.inner' calls randn_like\(\)"),
    (BatchNormCall(), r"forward\(\) of module '1\.inner' calls batch_norm\(\)"),
])
def test_modules_the_sme_cannot_model_are_refused_by_path(module, message, data):
    net = seq(nn.Linear(3, 8), Block(module), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))
    with pytest.raises(ValueError, match=message):
        dropout_net(net, *data)


def test_batchnorm_was_not_a_harmless_choice(data):
    # Why refusing matters: train-mode and eval-mode BatchNorm give different losses, so running
    # on the running statistics (main's behaviour) verified the SME of another network.
    net = seq(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
    X, y = data
    with torch.no_grad():
        losses = [0.5 * ((net.train(mode)(X).squeeze(1) - y) ** 2).mean() for mode in (True, False)]
    assert abs(float(losses[0] - losses[1])) > 1e-3


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input:UserWarning")
@pytest.mark.parametrize(("layer", "shape"), [
    (nn.Dropout1d(0.1), (12, 8)),   # torch: (N, C) is one unbatched (C, L): whole examples drop
    (nn.Dropout2d(0.1), (12, 4, 2)),  # torch: a deprecated 1-D rule on (N, C, L)
    (nn.Dropout3d(0.1), (12, 2, 2, 2)),  # torch: (N, C, H, W) is one unbatched (C, D, H, W)
])
def test_channel_dropout_on_another_layout_than_torchs_is_refused(layer, shape, data):
    X = torch.randn(*shape, dtype=DT)
    net = seq(layer, nn.Flatten(), nn.Linear(8, 1))
    with pytest.raises(ValueError, match=rf"module '0': {type(layer).__name__} drops channels .* "
                       rf"one example's input here has shape {tuple(shape[1:])}".replace("(", r"\(")
                       .replace(")", r"\)")):
        dropout_net(net, X, data[1])


def test_channel_dropout_on_its_own_layout_is_modelled_per_channel(data):
    X = torch.randn(12, 4, 2, 2, dtype=DT)
    net = seq(nn.Dropout2d(0.2), nn.Flatten(), nn.Linear(16, 1))
    algo = dropout_net(net, X, data[1])
    assert algo.model.layers[0].mask_shape == (4, 1, 1)


@pytest.mark.parametrize("norm", [
    nn.LayerNorm(8), nn.GroupNorm(2, 8),
    nn.Sequential(nn.Unflatten(1, (4, 2)), nn.InstanceNorm1d(4), nn.Flatten())])
def test_per_example_normalisation_is_accepted(norm, data):
    net = seq(nn.Linear(3, 8), norm, nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))
    algo = dropout_net(net, *data)
    assert len(algo.model.layers) == 1


def test_the_module_report_lists_what_is_modelled_and_what_runs_unchanged(data):
    net = seq(nn.Linear(3, 8), nn.LayerNorm(8), nn.Tanh(), nn.Dropout(0.25), nn.Linear(8, 1))
    report = dropout_net(net, *data).model.module_report
    assert report[1] == "  3: Dropout(p=0.25): keep probability 0.75, masks of shape (8,)"
    assert report[2] == ("run unchanged (deterministic, same in train and eval mode): LayerNorm, "
                         "Linear ×2, Tanh")


def test_the_sampled_sme_gets_a_path_budget_and_the_exact_one_does_not():
    sampled = builtin_problem(data="toy", placement="every", depth=2, width=6)
    assert not sampled.exact
    need = sampled.paths_needed(0.01, 0.2, 2)
    # N ∝ z² (lr T)⁻¹ ((1 − 1/s))⁻² by construction: the same masks, exact ratios.
    assert sampled.paths_needed(0.005, 0.2, 2) in (2 * need - 1, 2 * need, 2 * need + 1)
    assert abs(sampled.paths_needed(0.01, 0.2, 2, z=2.5) - need / 4) <= 1
    assert abs(sampled.paths_needed(0.01, 0.2, 4) - need * 4 / 9) <= 1
    notes = sampled.plan_notes([0.02, 0.01], 0.2, 10, 1, 2)
    assert "path budget" in notes[-1] and f"≈ {need:,} paths per side" in notes[-1]
    assert "too few" in notes[-1]
    exact = builtin_problem(data="toy", width=6)
    assert exact.exact
    assert not any("path budget" in line for line in exact.plan_notes([0.02, 0.01], 0.2, 10, 1, 2))


def test_the_cli_prints_the_modules_and_the_budget_before_it_runs(monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise ValueError("stop before the run")

    monkeypatch.setattr("smetool.cli.verify", refuse)
    code = main(["verify", "dropout-net", "--data", "toy", "--placement", "every", "--depth", "2",
                 "--width", "6", "--paths", "10", "--method", "euler", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "stop before the run" in err
    assert "dropout modelled by smetool's masks" in err and "Dropout(p=0.1)" in err
    assert "run unchanged" in err and "path budget" in err
    assert err.index("path budget") < err.index("stop before the run")
