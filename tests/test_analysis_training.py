"""Implicit regularizers R_1, R_2 and the batched dropout / explicit / GD runs."""

import itertools

import pytest
import torch

from smetool.analysis.training import implicit_regularization, train
from smetool.models.dropout_problem import DropoutProblem, default_problem


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny batched ops: intra-op threads only add wake-up latency (worse under pytest-xdist)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _small(p=0.6, m=3):
    X = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(1)
    problem = DropoutProblem(X, X[:, 0] ** 2, width=m, keep_prob=p)
    theta = torch.randn(2, problem.n_params, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    return problem, theta


def test_implicit_regularizers_against_enumeration():
    problem, theta = _small()
    m, p, lr = problem.width, problem.keep_prob, 0.05
    res = implicit_regularization(problem, theta, lr)
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=torch.float64)
    w = p ** masks.sum(1) * (1 - p) ** (m - masks.sum(1))
    for i, t in enumerate(theta):
        loss, G = problem.dropout_loss_grad(t.expand(len(masks), -1), masks / p)
        EL = float((w * loss).sum())  # E R_S^drop = R_S + R_1
        EG = (w[:, None] * G).sum(0)
        second = float((w * (G * G).sum(1)).sum())  # E ‖∇R_S^drop‖²
        assert res.expected_loss[i].item() == pytest.approx(EL, rel=1e-12)
        assert res.grad_norm_sq[i].item() == pytest.approx(float(EG @ EG), rel=1e-10)
        assert res.r2[i].item() == pytest.approx(lr / 4 * second, rel=1e-10)
    h = problem.net.terms(theta, problem.X).h
    r1 = (1 - p) / (2 * problem.n_points * p) * (h * h).sum(dim=(1, 2))
    assert torch.allclose(res.r1, r1, atol=1e-14)
    assert "ImplicitRegularization" in repr(res) and set(res.to_dict()) >= {"r1", "r2"}
    with pytest.raises(ValueError, match="`lr` must be a positive finite number; got 0"):
        implicit_regularization(problem, theta, 0)


def test_gd_and_explicit_runs_match_hand_loops():
    problem, theta = _small()
    lr, steps = 0.1, 7
    gd = train(problem, theta, method="gd", lr=lr, steps=steps, record_every=3)
    ex = train(problem, theta, method="explicit", lr=lr, steps=steps)
    t_gd, t_ex = theta.clone(), theta.clone()
    for _ in range(steps):
        t_gd = t_gd - lr * problem.net.loss_grad(t_gd, problem.X, problem.y)[1]
        t_ex = t_ex.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(problem.expected_loss(t_ex).sum(), t_ex)
        t_ex = (t_ex - lr * g).detach()
    assert torch.allclose(gd.final, t_gd, atol=1e-13)
    assert torch.allclose(ex.final, t_ex, atol=1e-13)
    assert gd.steps.tolist() == [0, 3, 6, 7] and gd.theta.shape == (4, 2, problem.n_params)
    assert torch.allclose(gd.loss[-1], problem.loss(gd.final))
    assert "Trajectory" in repr(gd) and gd.to_dict()["method"] == "gd"


def test_dropout_run_is_reproducible_and_reports_progress():
    problem, theta0 = default_problem()
    theta = theta0.expand(3, -1)
    calls = []
    a = train(problem, theta, method="dropout", lr=0.1, steps=300,
              generator=torch.Generator().manual_seed(1), progress=calls.append)
    b = train(problem, theta, method="dropout", lr=0.1, steps=300,
              generator=torch.Generator().manual_seed(1), record_every=100)
    assert torch.equal(a.final, b.final) and sum(calls) == 300
    assert not torch.equal(a.final[0], a.final[1])  # fresh masks per path
    # one step by hand with the same generator state
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    one = train(problem, theta, method="dropout", lr=0.1, steps=1, generator=g1)
    assert torch.equal(one.final, problem.step(theta, 0.1, g2))


def test_train_validation_and_divergence():
    problem, theta = _small()
    with pytest.raises(ValueError, match="`method` must be one of dropout, explicit, gd; got 'sg"):
        train(problem, theta, method="sgd", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="`steps` must be a non-negative integer; got -1"):
        train(problem, theta, method="gd", lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="`record_every` must be a positive integer; got 0"):
        train(problem, theta, method="gd", lr=0.1, steps=1, record_every=0)
    with pytest.raises(ValueError, match="`generator` is required for method='dropout'"):
        train(problem, theta, method="dropout", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="`theta0` must have shape \\(P, D\\)"):
        train(problem, theta[0], method="gd", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="`lr` must be a positive finite number"):
        train(problem, theta, method="gd", lr=float("inf"), steps=1)
    with pytest.raises(ValueError, match="non-finite parameters by step"):
        train(problem, 10 * theta, method="gd", lr=1e6, steps=50)
    assert train(problem, theta, method="gd", lr=0.1, steps=0).steps.tolist() == [0]
