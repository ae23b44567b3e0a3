"""The one training loop of the analyses (built on Algorithm.step) and the implicit regularizers
the plug-ins declare: hand loops, the target stop, the non-finite check, exact references."""

import itertools

import pytest
import torch

from smetool.algorithms import DropoutAlgorithm, GradientDescent, MinibatchSGD
from smetool.algorithms.training import Trajectory, train
from smetool.models.dropout_problem import DropoutProblem, default_problem


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny batched ops: intra-op threads only add wake-up latency (worse under pytest-xdist)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _small(p=0.6, m=3, batch_size=None):
    X = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(1)
    problem = DropoutProblem(X, X[:, 0] ** 2, width=m, keep_prob=p, batch_size=batch_size)
    theta = torch.randn(2, problem.n_params, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    return problem, theta


def test_gd_run_matches_a_hand_loop_and_records_the_loss():
    problem, theta = _small()
    lr, steps = 0.1, 7
    gd = train(GradientDescent(problem, theta[0]), theta, lr=lr, steps=steps,
               generator=torch.Generator(), check_every=3)
    t = theta.clone()
    for _ in range(steps):
        t = t - lr * problem.net.loss_grad(t, problem.X, problem.y)[1]
    assert torch.allclose(gd.final, t, atol=1e-14)
    assert gd.steps.tolist() == [0, 3, 6, 7] and gd.loss.shape == (4, 2)
    assert torch.allclose(gd.loss[-1], problem.loss(gd.final))
    assert gd.reached.all() and gd.stopped.tolist() == [7, 7] and gd.window is None
    record = gd.to_dict()
    assert record["label"] == "gd" and "final" not in record and isinstance(gd, Trajectory)


def test_dropout_run_is_the_plugin_step_draw_for_draw():
    problem, theta0 = default_problem()
    theta = theta0.expand(3, -1)
    algo = DropoutAlgorithm(problem, theta0)
    calls = []
    a = train(algo, theta, lr=0.1, steps=300, generator=torch.Generator().manual_seed(1),
              progress=calls.append, keep_last=5)
    b = train(algo, theta, lr=0.1, steps=300, generator=torch.Generator().manual_seed(1),
              check_every=100)
    assert torch.equal(a.final, b.final) and sum(calls) == 300
    assert not torch.equal(a.final[0], a.final[1])  # fresh masks per path
    assert a.window.shape == (5, 3, problem.n_params) and torch.equal(a.window[-1], a.final)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    one = train(algo, theta, lr=0.1, steps=1, generator=g1)
    assert torch.equal(one.final, problem.step(theta, 0.1, g2))


def test_each_path_stops_where_it_first_reaches_the_target():
    problem, theta = _small()
    theta = torch.cat([theta, 3 * theta])  # the scaled starts need more steps
    gd = GradientDescent(problem, theta[0])
    full = train(gd, theta, lr=0.1, steps=400, generator=torch.Generator(), check_every=1)
    target = float(full.loss[0].min()) * 0.5
    run = train(gd, theta, lr=0.1, steps=400, generator=torch.Generator(), target=target,
                check_every=1)
    first = [int(full.steps[torch.nonzero(full.loss[:, p] <= target)[0, 0]])
             for p in range(theta.shape[0])]
    assert run.stopped.tolist() == first and run.reached.all()
    for p, k in enumerate(first):  # frozen at the iterate where the target was reached
        at = train(gd, theta[p:p + 1], lr=0.1, steps=k, generator=torch.Generator())
        assert torch.allclose(run.final[p], at.final[0], atol=1e-14)
    never = train(gd, theta, lr=0.1, steps=3, generator=torch.Generator(), target=1e-12)
    assert not never.reached.any() and never.stopped.tolist() == [3] * 4


def test_arguments_and_divergence_are_one_line_errors():
    problem, theta = _small()
    gd = GradientDescent(problem, theta[0])
    g = torch.Generator()
    with pytest.raises(ValueError, match="`steps` must be a positive integer; got 0"):
        train(gd, theta, lr=0.1, steps=0, generator=g)
    with pytest.raises(ValueError, match="`theta0` must have shape \\(P, 9\\)"):
        train(gd, theta[0], lr=0.1, steps=1, generator=g)
    with pytest.raises(ValueError, match="`lr` must be a positive finite number"):
        train(gd, theta, lr=float("inf"), steps=1, generator=g)
    with pytest.raises(ValueError, match="`target` must be a positive finite number; got -1.0"):
        train(gd, theta, lr=0.1, steps=1, generator=g, target=-1.0)
    with pytest.raises(TypeError, match="with a landscape \\(HasLandscape\\)"):
        train(object(), theta, lr=0.1, steps=1, generator=g)
    with pytest.raises(ValueError, match="gd training produced non-finite parameters by step"):
        train(gd, 10 * theta, lr=1e6, steps=50, generator=g)


def test_dropout_regularizer_is_r1_by_enumeration():
    problem, theta = _small()
    m, p = problem.width, problem.keep_prob
    reg = DropoutAlgorithm(problem, theta[0]).implicit_regularizer(0.05)
    value, se = reg.value(theta, torch.Generator())
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=torch.float64)
    w = p ** masks.sum(1) * (1 - p) ** (m - masks.sum(1))
    for i, t in enumerate(theta):
        loss, _ = problem.dropout_loss_grad(t.expand(len(masks), -1), masks / p)
        assert float(value[i]) == pytest.approx(float((w * loss).sum() - problem.loss(t[None])),
                                                rel=1e-12)
    assert torch.equal(se, torch.zeros(2, dtype=torch.float64)) and reg.name == "R_1"


def test_gd_and_sgd_regularizers():
    problem, theta = _small(batch_size=2)
    lr = 0.2
    g = problem.gradient(theta)
    value, se = GradientDescent(problem, theta[0]).implicit_regularizer(lr).value(theta, None)
    assert torch.allclose(value, lr / 4 * (g * g).sum(1)) and bool((se == 0).all())
    # SGD's (lr/4) E‖∇f_γ‖²: E over B = 2 indices with replacement is ‖∇f‖² + tr Σ_1 / 2, exact
    per = torch.stack([problem.weighted_gradient(theta, torch.nn.functional.one_hot(
        torch.full((2,), i), 5).double()) for i in range(5)], dim=1)  # (P, n, D)
    exact = (g * g).sum(1) + ((per - g[:, None]) ** 2).sum(-1).mean(1) / 2
    sgd = MinibatchSGD(problem, theta[0]).implicit_regularizer(lr)
    est, est_se = sgd.value(theta, torch.Generator().manual_seed(0))
    # 64 draws per point: within 5 standard errors (false failure < 1e-6 per point)
    assert bool(((est - lr / 4 * exact).abs() < 5 * est_se).all())
