"""The dropout-net plug-in: the two-layer case reproduces the dropout plug-in, the control-variate
contract, the sampled SME's exact per-step moments, negative controls and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_net_dropout import DT, sampled_cnn, two_layer_pair

import smetool
from smetool.algorithms import DropoutAlgorithm, SeparableNoise
from smetool.algorithms.dropout_net import (
    ExactNetDropout,
    NetDropout,
    builtin_problem,
    dropout_net,
)
from smetool.algorithms.dropout_net_sme import SampledNetDropoutSME
from smetool.brownian import GaussianIncrements
from smetool.cli import main
from smetool.models.data import has_digits
from smetool.models.net_dropout_exact import mask_enumeration
from smetool.montecarlo import weak_error
from smetool.solvers import EulerMaruyama, SmallNoiseHeun, UnsupportedError
from smetool.verification.producers import AlgorithmProducer, CoupledSMEProducer


@pytest.mark.parametrize("order", [1, 2])
def test_a_two_layer_module_reproduces_the_dropout_plugins_weak_errors(order):
    """Same seeds, same random draws: the weak-error tables of the two plug-ins agree to
    round-off (discrete masks and SME Brownian increments are drawn identically)."""
    problem, theta0, model, perm = two_layer_pair(width=6, n_points=8)
    ours = ExactNetDropout(model)
    theirs = DropoutAlgorithm(problem, theta0)
    j_theirs = theirs.probe_coordinate()
    j_ours = int((perm == j_theirs).nonzero()[0])  # the same parameter in the module's layout
    assert ours.probe_coordinate() == j_ours

    def tests(alg, j):
        return {"R_S": alg.model.loss if alg is ours else problem.loss,
                "L_S": ours.closed_form.expected_loss if alg is ours else problem.expected_loss,
                "norm": lambda x: (x * x).sum(dim=1), "coord": lambda x: x[:, j]}

    kw = dict(horizon=0.08, steps_per_lr=2, seed=3, order=order)
    a = smetool.verify(ours, (0.04, 0.02), 64, test_functions=tests(ours, j_ours), **kw)
    b = smetool.verify(theirs, (0.04, 0.02), 64, test_functions=tests(theirs, j_theirs), **kw)
    ea, eb = a.weak_errors.errors, b.weak_errors.errors
    assert torch.allclose(torch.as_tensor(ea), torch.as_tensor(eb), rtol=1e-9, atol=1e-13)
    assert torch.allclose(torch.as_tensor(a.weak_errors.stderrs), torch.as_tensor(b.weak_errors.stderrs),
                          rtol=1e-8, atol=1e-14)


def test_exact_plugin_meets_the_control_variate_contract():
    _, _, model, _ = two_layer_pair(width=4)
    algo = ExactNetDropout(model)
    assert isinstance(algo, SeparableNoise) and algo.name == "dropout-net"
    x = algo.initial_state(3) + 0.1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    stepped = algo.step(x, 0.05, g1)
    noise = algo.draw(3, 0.05, g2, dtype=DT, device=x.device)
    assert torch.equal(stepped, algo.step_with(x, 0.05, noise))
    mean, cov = mask_enumeration(model, x)
    assert torch.allclose(algo.mean_gradient(x), mean, atol=1e-14)
    assert torch.allclose(algo.gradient_covariance(x), cov, atol=1e-14)
    assert torch.allclose(algo.mean_step(x, 0.05), x - 0.05 * mean, atol=1e-14)


def test_sampled_plugin_is_not_separable_and_refuses_order_2():
    model = sampled_cnn()
    algo = NetDropout(model)
    assert not isinstance(algo, SeparableNoise) and not algo.exact
    with pytest.raises(ValueError, match=r"`order` must be one of \(1,\)"):
        algo.sme(0.1, 2)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=DT), torch.nn.Tanh(), torch.nn.Dropout(0.1),
                              torch.nn.Linear(3, 1, dtype=DT))
    X, y = torch.randn(5, 2, dtype=DT), torch.randn(5, dtype=DT)
    assert dropout_net(net, X, y).exact and not dropout_net(net, X, y, exact=False).exact
    with pytest.raises(ValueError, match="`exact=True` but the closed forms do not apply"):
        dropout_net(torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(2, 1, dtype=DT),
                                        torch.nn.Tanh()), X, y, exact=True)


def test_sampled_euler_step_has_exactly_the_sme_steps_mean_and_covariance():
    """One step X1 = x + h b̂ + √(h − h²/(lr K)) ζ from a fixed x, 20,000 draws, against the
    exact moments by mask enumeration: mean x − h∇L_S and total variance lr·h·tr Σ.

    Mean: Bonferroni over the live coordinates, |z| < 4.5 (P(false failure) < 1e-2); total
    variance: |z| < 4 (P < 1e-4). Fixed seed."""
    model = sampled_cnn()
    lr, h, K, N = 0.1, 0.05, 2, 20_000
    sde = SampledNetDropoutSME(model, lr, drift_masks=K, noise_pairs=1)
    x = model.theta0.unsqueeze(0)
    mean, cov = mask_enumeration(model, x)
    X1 = EulerMaruyama().step(sde, 0.0, x.repeat(N, 1), h, None, torch.Generator().manual_seed(0))
    d = X1 - x
    var = h * lr * torch.diagonal(cov[0])
    live = var > 1e-14
    z = (d.mean(dim=0)[live] + h * mean[0][live]) / torch.sqrt(var[live] / N)
    assert float(z.abs().max()) < 4.5
    sq = ((d + h * mean[0]) ** 2).sum(dim=1)
    z_tr = (sq.mean() - h * lr * torch.trace(cov[0])) / (sq.std() / N ** 0.5)
    assert abs(float(z_tr)) < 4.0


def test_sampled_drift_needs_a_small_enough_step_and_euler():
    sde = SampledNetDropoutSME(sampled_cnn(), 0.01, drift_masks=2)
    x = sde.model.theta0.unsqueeze(0)
    with pytest.raises(ValueError, match="too large for its sampled drift"):
        EulerMaruyama().step(sde, 0.0, x, 0.03, None, torch.Generator().manual_seed(0))
    with pytest.raises(UnsupportedError, match="only gives unbiased drift estimates"):
        SmallNoiseHeun().check(sde, GaussianIncrements())
    with pytest.raises(NotImplementedError, match="no closed-form drift"):
        sde.drift(0.0, x)


def test_verify_runs_the_sampled_sme_with_euler_and_same_seed_same_numbers():
    algo = builtin_problem(data="toy", width=6)
    algo = NetDropout(algo.model)
    kw = dict(horizon=0.04, steps_per_lr=2, seed=1, method="euler")
    a = smetool.verify(algo, (0.02, 0.01), 40, **kw)
    b = smetool.verify(algo, (0.02, 0.01), 40, chunk_size=40, **kw)
    assert torch.equal(torch.as_tensor(a.weak_errors.errors), torch.as_tensor(b.weak_errors.errors))
    with pytest.raises(UnsupportedError, match="EulerMaruyama"):
        smetool.verify(algo, (0.02, 0.01), 40, horizon=0.04)


def test_the_sme_without_implicit_regularizer_is_rejected():
    """Negative control of the order-1 check on the toy problem: the SME with drift −∇R_S has an
    O(1) weak error in ‖θ‖² (R_1 shrinks the weights), so its fitted slope is near 0.

    Measured before choosing the sizes: the flows of L_S and R_S differ by 0.044 in ‖θ‖² at
    T = 0.4, where the paths' spread is 0.02: |error| ≈ 35 SE at 500 paths, so the checks
    (≥ 5 SE, slope CI below 0.5) fail by chance with negligible probability."""
    algo = builtin_problem(data="toy", width=8, keep_prob=0.8, out_scale=1.0)
    lrs, T, n = (0.04, 0.02, 0.01), 0.4, 500
    control = algo.negative_controls(0.04, 1)[0]
    assert control.name == "no R_1" and control.slope == 0.0
    sol = SmallNoiseHeun()
    smes = {lr: CoupledSMEProducer(algo, algo.negative_controls(lr, 1)[0].sde, sol, T, lr / 2, DT,
                                   torch.device("cpu")) for lr in lrs}
    disc = {lr: AlgorithmProducer(algo, lr, round(T / lr), DT, torch.device("cpu")) for lr in lrs}
    tests = {"theta_norm_sq": lambda x: (x * x).sum(dim=1)}
    table = weak_error(smes, disc, tests, n, steps=lrs, times=(T,), seed=0, step_name="lr")
    fit = table.fit("theta_norm_sq")
    assert float(table.snr.min()) > 5.0
    assert fit.ci[1] < 0.5


def test_builtin_problem_choices_are_checked():
    with pytest.raises(ValueError, match="`model` must be 'mlp' or 'cnn'"):
        builtin_problem(model="rnn")
    with pytest.raises(ValueError, match="1-D regression task"):
        builtin_problem(data="toy", model="cnn")


def test_cli_verifies_dropout_net_on_the_toy_task(capsys):
    code = main(["verify", "dropout-net", "--data", "toy", "--lrs", "0.04,0.02", "--horizon", "0.08",
                 "--paths", "60", "--quiet"])
    assert code == 0


@pytest.mark.skipif(not has_digits(), reason="scikit-learn (the 'data' extra) is not installed")
def test_cli_runs_on_digits_with_mlp_and_cnn(capsys):
    for model in ("mlp", "cnn"):
        code = main(["verify", "dropout-net", "--model", model, "--width", "3", "--n-samples", "10",
                     "--lrs", "0.04,0.02", "--horizon", "0.08", "--paths", "20", "--quiet"])
        assert code == 0


@pytest.mark.skipif(not has_digits(), reason="scikit-learn (the 'data' extra) is not installed")
def test_benchmark_runs_in_its_fast_mode(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dropout_net.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), "--fast", "--json", str(tmp_path / "b.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"mlp", "cnn"}
    assert all(r["step_path_steps_per_s"] > 0 and r["ratio_plain_over_step"] > 0 for r in rows)
