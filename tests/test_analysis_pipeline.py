"""The analyses on any landscape: verdicts and their negative controls, the sample-based measures
against their dense counterparts, the Haar baseline in closed form, the trajectory diagnostics,
the measure registry, and analyze / compare end to end on small networks (the full
three-network record is tests/test_findings_page.py's)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats

from smetool.algorithms import DropoutAlgorithm, GradientDescent, get_plugin
from smetool.analysis import (
    Finding,
    Measure,
    Settings,
    alignment,
    alignment_from_samples,
    alignment_with_baseline,
    analyze,
    compare,
    decide,
    detrend,
    haar_baseline_moments,
    hessian_summary,
    initial_points,
    linear_surrogate,
    permuted_slopes,
    registered_measures,
    rotated_alignment,
    sample_covariance,
    sign_flipped,
    train,
    unit_orientations,
    variance_flatness,
    variance_flatness_from_samples,
    window_scan,
)
from smetool.analysis.findings import per_seed_slopes
from smetool.analysis.trajectory_windows import flat_noise_share, variance_growth
from smetool.models.dropout_problem import default_problem
from smetool.models.networks import builtin_network
from smetool.models.two_layer_hessian import expected_loss_hessian, loss_hessian


@pytest.fixture(scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------ verdicts
def test_decide_uses_the_two_sided_t_interval_and_the_claimed_sign():
    x = [-1.0, -2.0, -1.5, -0.5, -1.2]
    half = stats.t.ppf(0.99, 4) * torch.tensor(x, dtype=torch.float64).std().item() / math.sqrt(5)
    v = decide("d", "claim", x, -1)
    assert v.verdict == "holds" and math.isclose(v.low, -1.24 - half, rel_tol=1e-7)
    assert math.isclose(v.margin, -v.high, rel_tol=1e-12) and v.margin > 0
    assert decide("d", "claim", x, +1).verdict == "fails"
    assert decide("d", "claim", [-1.0, 1.0, 0.5, -0.3], -1).verdict == "inconclusive"
    nan = decide("d", "claim", [1.0, float("nan")], +1)
    assert nan.verdict == "inconclusive" and nan.n_seeds == 1 and "fewer than 2" in nan.detail
    with pytest.raises(ValueError, match="`sign` must be -1 or \\+1; got 0"):
        decide("d", "c", x, 0)


def test_negative_controls_of_a_strong_relation_and_a_strong_difference_do_not_hold():
    # a perfect power law y ∝ x^-2 on 8 seeds × 10 directions: the finding holds, the
    # permuted pairing (expectation 0 by exchangeability) must not; a false "holds" of the
    # control has probability ≤ 1 % (one side of the 98 % interval) at this fixed seed.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 10, generator=g, dtype=torch.float64) * 10 + 0.1
    y = x**-2.0 * torch.exp(0.1 * torch.randn(8, 10, generator=g, dtype=torch.float64))
    assert decide("r", "c", per_seed_slopes(x, y), -1).verdict == "holds"
    assert decide("r", "c", permuted_slopes(x, y, g), -1).verdict != "holds"
    diff = -1.0 - 0.1 * torch.rand(8, generator=g, dtype=torch.float64)
    assert decide("d", "c", diff, -1).verdict == "holds"
    # all 8 signs equal has probability 2⁻⁷ < 1 %: the control does not hold at this seed
    assert decide("d", "c", sign_flipped(diff, g), -1).verdict != "holds"


# ------------------------------------------------------------------------------ alignment
def test_haar_baseline_moments_match_haar_sampling():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    H = (A @ A.T + torch.diag(torch.arange(6.0, dtype=torch.float64))).unsqueeze(0)
    B = torch.randn(6, 2, generator=g, dtype=torch.float64)
    S = (B @ B.T).unsqueeze(0)
    n = 20_000
    sampled = alignment_with_baseline(H, S, g, n_baseline=n)
    nh, ns = torch.linalg.matrix_norm(H), torch.linalg.matrix_norm(S)
    mean, sd = haar_baseline_moments(torch.diagonal(H, dim1=1, dim2=2).sum(-1), nh,
                                     torch.diagonal(S, dim1=1, dim2=2).sum(-1), ns, 6)
    # sample mean within 5 standard errors (false failure < 1e-6); the sample sd within 5 % (its
    # relative standard error is about sqrt(κ/(4n)) < 1.5 % for these bounded draws)
    assert abs(float(sampled.baseline_mean - mean)) < 5 * float(sd) / math.sqrt(n)
    assert abs(float(sampled.baseline_sd / sd) - 1) < 0.05


def test_alignment_from_samples_equals_the_dense_formula_and_its_control_is_null():
    problem, theta0 = default_problem()
    theta = theta0.repeat(400, 1)
    H = loss_hessian(problem.net, theta, problem.X, problem.y)
    G = torch.randn(400, 30, 48, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64) @ H  # noise roughly aligned with H
    S = sample_covariance(G).covariance
    tr, fro = torch.diagonal(H, dim1=1, dim2=2).sum(-1), torch.linalg.matrix_norm(H)

    def hvp(V):
        return torch.einsum("pde,pse->psd", H, V)

    res = alignment_from_samples(G, hvp, tr, fro)
    assert torch.allclose(res.alpha, alignment(H, S), atol=1e-12)
    # the control (one Haar rotation per path) averages to the exact baseline mean: 400 draws,
    # within 5 standard errors (false failure < 1e-6)
    ctrl = rotated_alignment(G, hvp, fro, torch.Generator().manual_seed(3))
    assert abs(float(ctrl.mean() - res.baseline_mean.mean())) < 5 * float(ctrl.std()) / 20
    assert float(res.alpha.min()) > float((res.baseline_mean + 3 * res.baseline_sd).max())


# ------------------------------------------------------------------------------ measures
def test_variance_flatness_from_samples_equals_the_dense_version(one_thread):
    problem, theta0 = default_problem()
    theta = theta0.repeat(2, 1) + 0.05 * torch.randn(2, 48, generator=torch.Generator()
                                                     .manual_seed(4), dtype=torch.float64)
    G = torch.randn(2, 60, 48, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    H = loss_hessian(problem.net, theta, problem.X, problem.y)
    dense = variance_flatness(sample_covariance(G).covariance, theta, problem.loss, H,
                              n_components=5)
    sampled = variance_flatness_from_samples(
        G, theta, problem.loss, lambda c, V: torch.einsum("pde,pse->psd", H, V),
        n_components=5)
    assert torch.allclose(sampled.components.variances, dense.components.variances, rtol=1e-10)
    assert torch.allclose(sampled.components.directions, dense.components.directions, atol=1e-8)
    assert torch.allclose(sampled.hessian, dense.hessian, rtol=1e-8)
    assert torch.allclose(sampled.interval, dense.interval, rtol=1e-8)


def test_units_of_the_two_layer_problem_and_of_a_network_module_agree():
    # the two-layer landscape's neurons and the same network as an nn.Module (first Linear layer
    # without bias on the input with the bias feature, then a Linear of the units' outputs)
    problem, _ = default_problem()
    theta = torch.randn(3, 48, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    a, W = problem.net.split(theta)
    units = problem.units(theta)
    assert torch.equal(units.weights, W) and units.antipodal
    assert torch.allclose(units.amplitude, a.abs() * W.norm(dim=-1))
    from torch import nn

    from smetool.models import NetDropoutModel

    module = nn.Sequential(nn.Linear(2, 16, bias=False, dtype=torch.float64), nn.Tanh(),
                           nn.Dropout(0.1), nn.Linear(16, 1, bias=False, dtype=torch.float64))
    model = NetDropoutModel(module, problem.X, problem.y)
    flat = torch.cat([W.reshape(3, -1), a], dim=1)  # the module's order: first W, then a
    net_units = model.units(flat)
    assert torch.equal(net_units.weights, W) and net_units.antipodal
    assert torch.allclose(net_units.amplitude, units.amplitude)
    ref = unit_orientations(units.weights, units.amplitude)
    got = unit_orientations(net_units.weights, net_units.amplitude)
    assert torch.equal(got.count, ref.count) and torch.equal(got.labels, ref.labels)


def test_detrend_and_growth_exponents_on_known_processes():
    g = torch.Generator().manual_seed(7)
    T = 2000
    t = torch.arange(T, dtype=torch.float64)
    line = (3.0 * t)[:, None, None] * torch.ones(1, 2, 3, dtype=torch.float64)
    noise = torch.randn(T, 2, 3, generator=g, dtype=torch.float64)
    flat = detrend(line + noise)
    assert torch.allclose(flat.mean(0), (line + noise).mean(0), atol=1e-9)
    assert float(flat.var(0).max()) < 1.2  # the trend is gone, the unit noise is left
    d = torch.eye(3, dtype=torch.float64).expand(2, -1, -1)
    walk = torch.cumsum(noise, dim=0)
    # iid: β ≈ 0; random walk: β ≈ 1; drift: β = 2 (a line's unbiased variance over n steps is
    # ∝ n(n + 1): log₁₀(2000·2001 / (200·201)) = 1.998)
    assert float(variance_growth(noise, d).abs().max()) < 0.1
    assert float((variance_growth(walk, d) - 1).abs().median()) < 0.35
    assert torch.allclose(variance_growth(line, d), torch.full((2, 3), 2.0,
                                                                dtype=torch.float64), atol=3e-3)


def test_linear_surrogate_has_the_exact_two_step_covariance():
    problem, theta0 = default_problem()
    P, lr = 1500, 0.2
    center = theta0.repeat(P, 1)
    Hl = expected_loss_hessian(problem.net, theta0[None], problem.X, problem.y,
                               problem.keep_prob)[0]
    S = problem.noise_covariance(theta0[None])[0]
    traj, clamped = linear_surrogate(center, Hl.expand(P, -1, -1), S.expand(P, -1, -1), lr, 1, 1,
                                     torch.Generator().manual_seed(8))
    lam, V = torch.linalg.eigh(Hl)
    A = torch.eye(48, dtype=torch.float64) - lr * V @ torch.diag(lam.clamp_min(0)) @ V.T
    exact = lr**2 * (A @ S @ A.T + S)  # x₂ = A ε Σ^½ z₁ + ε Σ^½ z₂
    est = sample_covariance((traj[0] - center).unsqueeze(0))
    # every entry within 5.5 standard errors (1,176 distinct entries, P(|z| > 5.5) ≈ 4e-8
    # each: false failure < 1e-4)
    z = (est.covariance[0] - exact) / est.stderr[0].clamp_min(1e-30)
    assert float(z.abs().max()) < 5.5 and int(clamped[0]) == int((lam < 0).sum())


# ------------------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def small_report(one_thread):
    landscape, _ = builtin_network("mlp", "toy", width=8)
    inits = initial_points(landscape, 3)
    algorithm = get_plugin("dropout").build_on(landscape, inits[0])
    return analyze(algorithm, inits, lr=0.2, steps=100, windows=(30, 60), progress=False,
                   settings=Settings(n_noise=24, n_components=5, n_eigen=6), label="dropout")


def test_analysis_report_structure_and_strict_json(small_report, tmp_path):
    rep = small_report
    f = rep.findings["dropout"]
    names = {"flatter", "lower_top_eigenvalue", "alignment", "condensation", "regularizer",
             "variance_principle"} | {
        f"variance_{w}_{k}" for w in ("interval", "hessian")
        for k in ("gradient", "trajectory@30", "trajectory@30-detrended", "trajectory@60",
                  "trajectory@60-detrended")}
    assert set(f) == names and list(rep.trajectories) == ["gd", "dropout"]
    assert all(x.verdict in ("holds", "fails", "inconclusive") and isinstance(x.control, Finding)
               for x in f.values())
    assert rep.config["hessian_method"] == "dense" and rep.config["n_params"] == 24
    data = json.loads(json.dumps(rep.to_dict(), allow_nan=False))  # strict JSON
    for g in data["findings"]["dropout"].values():  # each verdict follows from its values
        assert decide(g["name"], g["claim"], g["values"], g["sign"]).verdict == g["verdict"]
        c = g["control"]
        assert decide(c["name"], c["claim"], c["values"], c["sign"]).verdict == c["verdict"]
    assert "analyze on mlp (toy)" in rep.summary() and "StudyReport(analyze" in repr(rep)
    pytest.importorskip("matplotlib")
    written = rep.write(tmp_path)
    names = sorted(p.rsplit("/", 1)[-1] for p in written.files)
    assert names == ["alignment.png", "condensation.png", "loss.png", "regularizer.png",
                     "report.json", "sharpness.png", "table.md", "variance_flatness.png",
                     "variance_principle.png"]
    assert "NaN" not in (tmp_path / "report.json").read_text()


def test_the_same_seed_gives_the_same_numbers_whatever_else_runs(small_report, one_thread):
    # the measures' draws are keyed by measure and algorithm (SeedSequence), not by call order
    rep = small_report
    landscape = rep.study.landscape
    inits = rep.study.inits
    algorithm = get_plugin("dropout").build_on(landscape, inits[0])
    again = analyze(algorithm, inits, lr=0.2, steps=100, windows=(), progress=False,
                    settings=Settings(n_noise=24, n_components=5, n_eigen=6), label="dropout")
    for name in ("flatter", "alignment", "variance_interval_gradient", "variance_principle"):
        assert again.findings["dropout"][name].values == rep.findings["dropout"][name].values
    assert torch.equal(again.trajectories["dropout"].final, rep.trajectories["dropout"].final)


def test_lanczos_and_hutchpp_summary_agrees_with_the_dense_one(small_report):
    landscape = small_report.study.landscape
    theta = small_report.trajectories["dropout"].final
    dense, _ = hessian_summary(landscape, theta, k=3, generator=torch.Generator().manual_seed(0))
    ops, _ = hessian_summary(landscape, theta, k=3, dense_max=10, n_sketch=8, n_probes=12,
                             generator=torch.Generator().manual_seed(0))
    assert ops.method == "lanczos" and dense.method == "dense"
    assert torch.allclose(ops.top, dense.top, rtol=1e-5)
    # eigenvectors up to sign
    assert torch.allclose((ops.vectors * dense.vectors).sum(-1).abs(),
                          torch.ones(3, 3, dtype=torch.float64), atol=1e-4)
    # D = 24 ≤ 2·8 + 12 products: the sketch spans most of the range; 5 SE bounds (t, 11 dof)
    assert bool(((ops.trace - dense.trace).abs() <= 5 * ops.trace_stderr + 1e-9).all())
    assert bool(((ops.frobenius - dense.frobenius).abs()
                 <= 5 * ops.frobenius_stderr + 1e-9).all())


def test_trajectory_window_scan_and_flat_noise_on_the_two_layer_problem(one_thread):
    problem, _ = builtin_network("two-layer")
    inits = initial_points(problem, 2)
    run = train(DropoutAlgorithm(problem, inits[0]), inits, lr=0.2, steps=60,
                generator=torch.Generator().manual_seed(9), keep_last=60).window
    scan = window_scan(problem, run, (20, 60), n_components=4, extra_levels=(math.e,))
    assert set(scan.slopes) == {"interval", "hessian", "interval_detrended", "hessian_detrended",
                                "interval_level_2.71828"}
    assert scan.slopes["interval"].shape == (2, 2) and scan.pc_variance.shape == (2, 2, 4)
    H = expected_loss_hessian(problem.net, inits, problem.X, problem.y, problem.keep_prob)
    share, count = flat_noise_share(H, problem.noise_covariance(inits), 0.2, 100)
    assert bool(((share >= 0) & (share <= 1)).all()) and bool((count <= 48).all())


def test_every_measure_is_found_declared_and_runs_where_it_applies():
    found = {m.name: m for m in registered_measures("analyze") + registered_measures("compare")}
    assert set(found) == {"sharpness", "variance_flatness", "variance_principle", "alignment",
                          "condensation", "regularizer", "accuracy"}
    assert all(isinstance(m, Measure) and m.references and m.title for m in found.values())
    assert [m.name for m in registered_measures("compare")] == [
        "sharpness", "variance_principle", "alignment", "regularizer", "accuracy"]
    with pytest.raises(ValueError, match="`study` must be one of analyze, compare; got 'x'"):
        registered_measures("x")


def test_compare_trains_every_algorithm_to_the_same_loss(one_thread, tmp_path):
    landscape, test = builtin_network("mlp", "digits", width=4, n_samples=16, batch_size=4,
                                      test=40)
    inits = initial_points(landscape, 3)
    runs = [(name, get_plugin(name).build_on(landscape, inits[0]),
             get_plugin(name).analysis.network_lr or 0.1)
            for name in ("dropout", "sgd", "sam", "signsgd")]
    target = 0.5 * float(landscape.loss(inits).min())
    rep = compare(runs, inits, target=target, max_steps=3000, reference_lr=0.1, test=test,
                  progress=False, settings=Settings(n_noise=16, n_eigen=5))
    for label, traj in rep.trajectories.items():
        assert traj.reached.all(), label
        assert bool((landscape.loss(traj.final) <= target).all())
        # a path stops at the first check at or below the target: one check earlier it was above
        for p, k in enumerate(traj.stopped.tolist()):
            i = traj.steps.tolist().index(k)
            assert float(traj.loss[i, p]) <= target < float(traj.loss[i - 1, p])
    assert set(rep.measurements) == {"sharpness", "variance_principle", "alignment",
                                     "regularizer", "accuracy"}
    assert set(rep.findings) == {"dropout", "sgd", "sam", "signsgd"}
    assert "regularizer" not in rep.findings["signsgd"]  # its drift is not a gradient
    assert {"flatter", "lower_top_eigenvalue", "variance_principle", "alignment",
            "test_accuracy"} <= set(rep.findings["sam"])
    json.dumps(rep.to_dict(), allow_nan=False)


def test_argument_errors(one_thread):
    landscape, _ = builtin_network("mlp", "toy", width=4)
    inits = initial_points(landscape, 2)
    gd = GradientDescent(landscape, inits[0])
    algorithm = get_plugin("dropout").build_on(landscape, inits[0])
    with pytest.raises(ValueError, match="`windows` must be step counts ≥ 20"):
        analyze(algorithm, inits, lr=0.1, steps=2, windows=(5,), progress=False)
    with pytest.raises(ValueError, match=r"`inits` must have shape \(P ≥ 2, 12\)"):
        analyze(algorithm, inits[:1], lr=0.1, steps=2, progress=False)
    with pytest.raises(ValueError, match="`model` must be one of two-layer, mlp, cnn"):
        builtin_network("resnet")
    with pytest.raises(ValueError, match="`data`='toy' is a regression task"):
        builtin_network("cnn", "toy")
    with pytest.raises(ValueError, match="labels must be distinct and not 'gd'"):
        compare([("gd", gd, 0.1)], inits, target=0.1, max_steps=2, reference_lr=0.1)
    other, _ = builtin_network("mlp", "toy", width=5)
    with pytest.raises(ValueError, match="every algorithm must train the same landscape"):
        compare([("a", algorithm, 0.1), ("b", GradientDescent(other, initial_points(other, 2)[0]),
                                          0.1)], inits, target=0.1, max_steps=2, reference_lr=0.1)
    with pytest.raises(ValueError, match="non-finite parameters by step"):
        analyze(algorithm, inits * 1e3, lr=1e3, steps=40, windows=(20,), progress=False,
                settings=Settings(n_noise=12, n_components=3))


@pytest.mark.slow
def test_two_layer_trajectory_relations_hold_short_and_reverse_long(one_thread):
    # the measured result of docs/findings-beyond.md at the default two-layer settings
    problem, _ = builtin_network("two-layer")
    inits = initial_points(problem, 8)
    rep = analyze(DropoutAlgorithm(problem, inits[0]), inits, lr=0.2, steps=20_000,
                  progress=False)
    f = rep.findings["dropout"]
    assert f["variance_interval_trajectory@100"].verdict == "holds"
    assert f["variance_interval_trajectory@1000"].verdict == "fails"
    for name in ("flatter", "variance_interval_gradient", "variance_hessian_gradient",
                 "alignment", "condensation"):
        assert f[name].verdict == "holds", f[name].detail
    assert not any(x.control.holds for x in f.values())
