"""``smetool verify dropout-net --model MODULE:OBJECT --data FILE.npz|MODULE:OBJECT``: a user's
network and data, checked before anything runs (one line naming the flag, exit status 2)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from smetool.algorithms.registry import get_plugin
from smetool.cli import main

USER = '''
import numpy as np
import torch
from torch import nn

from smetool.models.builtin_nets import mlp
from smetool.models.data import digits_data


def small():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(0.1), nn.Linear(6, 1)).double()
    with torch.no_grad():
        net[3].weight.mul_(0.3)
    return net


def builtin_twin():
    """The built-in default network of `verify dropout-net`, built by the user."""
    return mlp(64, 8, 10, keep_prob=0.9, out_scale=0.1, seed=0)


def digits():
    d = digits_data(32)
    return d.X, d.y


def not_a_module():
    return "net"


no_dropout = nn.Sequential(nn.Linear(3, 1)).double()
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(textwrap.dedent(USER))
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    np.savez(tmp_path / "data.npz", X=X, y=np.sin(X[:, 0]))
    np.savez(tmp_path / "labels.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    np.savez(tmp_path / "wrong.npz", A=X)
    (tmp_path / "text.npz").write_text("not an archive")
    return tmp_path


def _status(args):
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("args, message", [
    (["--model", "nowhere:net"], "argument --model: `--model`: cannot import module 'nowhere'"),
    (["--model", "my_nets:absent"], "module 'my_nets' has no attribute 'absent'"),
    (["--model", "resnet"], "--model must be mlp, cnn or MODULE:OBJECT"),
    (["--data", "missing.npz"], "argument --data: --data: no such file 'missing.npz'"),
    (["--data", "{tmp}/wrong.npz"], "the file must hold arrays X and y; it has A"),
    (["--data", "{tmp}/text.npz"], "not a readable .npz file"),
    (["--data", "mnist"], "--data must be digits, toy, a FILE.npz"),
    (["--model", "my_nets:not_a_module", "--data", "{tmp}/data.npz"],
     "--model my_nets:not_a_module must return a torch.nn.Module; got str"),
    (["--model", "my_nets:small"], "--model my_nets:small does not run on --data digits"),
    (["--model", "my_nets:small", "--data", "{tmp}/data.npz", "--width", "4"],
     "--width shapes the built-in networks; --model my_nets:small is your own"),
    (["--data", "{tmp}/data.npz", "--n-samples", "10"], "--n-samples subsamples the digits"),
    (["--model", "cnn", "--data", "{tmp}/data.npz"], "--model cnn needs images X of shape"),
    (["--model", "my_nets:small", "--data", "{tmp}/data.npz", "--loss", "cross_entropy"],
     "--loss cross_entropy needs integer labels y"),
    (["--model", "my_nets:small", "--data", "{tmp}/labels.npz", "--loss", "cross_entropy"],
     "--loss cross_entropy needs (n, C) logits with C > max label 1"),
    (["--model", "my_nets:no_dropout", "--data", "{tmp}/data.npz"], "dropout"),
])
def test_bad_model_or_data_is_one_line_naming_the_flag(user, args, message, capsys):
    args = [a.replace("{tmp}", str(user)) for a in args]
    assert _status(["verify", "dropout-net", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_a_users_twin_of_the_builtin_network_is_the_builtin_problem(user):
    spec = get_plugin("dropout-net")
    defaults = {o.name: o.default for o in spec.options}
    builtin = spec.build(dtype=torch.float64, device="cpu", **defaults)
    mine = spec.build(dtype=torch.float64, device="cpu",
                      **(defaults | {"model": "my_nets:builtin_twin", "data": "my_nets:digits"}))
    assert mine.exact and builtin.exact
    assert torch.equal(mine.theta0, builtin.theta0)
    theta = builtin.initial_state(3) + 0.01
    assert torch.allclose(mine.sme(0.05).drift(0.0, theta), builtin.sme(0.05).drift(0.0, theta))


def test_a_users_network_and_npz_data_run_end_to_end(user, tmp_path):
    out = tmp_path / "r.json"
    assert main(["verify", "dropout-net", "--model", "my_nets:small", "--data",
                 str(user / "data.npz"), "--lrs", "0.05,0.025,0.0125", "--paths", "60",
                 "--no-controls", "--quiet", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["settings"]["options"]["model"] == "my_nets:small"
    assert {"R_S", "L_S"} <= set(record["verdicts"])
