"""The findings on any network: verdicts and their negative controls, the sample-based measures
against their dense counterparts, the Haar baseline in closed form, the trajectory diagnostics, and
the runner end to end on small networks (the full three-network record is
tests/test_findings_page.py's)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats

from smetool.analysis import (
    alignment,
    alignment_from_samples,
    alignment_with_baseline,
    analyze_network,
    builtin_subject,
    decide,
    detrend,
    effective_orientations,
    haar_baseline_moments,
    linear_surrogate,
    loss_hessian,
    permuted_slopes,
    rotated_alignment,
    sample_covariance,
    sign_flipped,
    unit_orientations,
    variance_flatness,
    variance_flatness_from_samples,
    window_scan,
)
from smetool.analysis.hessian import expected_loss_hessian
from smetool.analysis.network import hessian_summary
from smetool.analysis.trajectory_windows import flat_noise_share, run_window, variance_growth
from smetool.analysis.verdicts import per_seed_slopes
from smetool.models.dropout_problem import default_problem


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


def test_unit_orientations_reproduce_the_two_layer_count():
    problem, _ = default_problem()
    theta = torch.randn(3, 48, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    a, W = problem.net.split(theta)
    ref = effective_orientations(problem.net, theta)
    got = unit_orientations(W, a.abs() * W.norm(dim=-1), antipodal=ref.antipodal)
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
    P, lr = 2500, 0.2
    center = theta0.repeat(P, 1)
    traj, clamped = linear_surrogate(problem, center, lr, 1, 1, torch.Generator().manual_seed(8))
    Hl = expected_loss_hessian(problem.net, theta0[None], problem.X, problem.y,
                               problem.keep_prob)[0]
    lam, V = torch.linalg.eigh(Hl)
    A = torch.eye(48, dtype=torch.float64) - lr * V @ torch.diag(lam.clamp_min(0)) @ V.T
    S = problem.noise_covariance(theta0[None])[0]
    exact = lr**2 * (A @ S @ A.T + S)  # x₂ = A ε F z₁ + ε F z₂
    est = sample_covariance((traj[0] - center).unsqueeze(0))
    # every entry within 5.5 standard errors (1,176 distinct entries, P(|z| > 5.5) ≈ 4e-8
    # each: false failure < 1e-4)
    z = (est.covariance[0] - exact) / est.stderr[0].clamp_min(1e-30)
    assert float(z.abs().max()) < 5.5 and int(clamped[0]) == int((lam < 0).sum())


# ------------------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def small_report(one_thread):
    subject, inits = builtin_subject("mlp", "toy", n_seeds=3, width=8)
    return analyze_network(subject, inits, lr=0.2, steps=100, windows=(30, 60), n_grad_samples=24,
                           n_components=5, progress=False)


def test_network_report_structure_and_json(small_report):
    rep = small_report
    names = {"flatter", "alignment", "condensation"} | {
        f"variance_{w}_{k}" for w in ("interval", "hessian")
        for k in ("gradient", "trajectory@30", "trajectory@30-detrended", "trajectory@60",
                  "trajectory@60-detrended")}
    assert set(rep.findings) == names == set(rep.controls)
    assert all(f.verdict in ("holds", "fails", "inconclusive") for f in rep.findings.values())
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["config"]["hessian_method"] == "dense" and data["config"]["n_params"] == 24
    # each verdict follows from its stored per-seed values
    for f in data["findings"].values():
        assert decide(f["name"], f["claim"], f["values"], f["sign"]).verdict == f["verdict"]
    assert "dropout findings on mlp (toy)" in rep.summary() and "NetworkReport(" in repr(rep)


def test_lanczos_and_hutchpp_summary_agrees_with_the_dense_one(small_report):
    subject, _ = builtin_subject("mlp", "toy", n_seeds=3, width=8)
    theta = small_report.final["dropout"]
    dense, _ = hessian_summary(subject, theta, k=3, generator=torch.Generator().manual_seed(0))
    ops, _ = hessian_summary(subject, theta, k=3, dense_max=10, n_sketch=8, n_probes=12,
                             generator=torch.Generator().manual_seed(0))
    assert ops.method == "lanczos" and dense.method == "dense"
    assert torch.allclose(ops.top, dense.top, rtol=1e-5)
    # D = 24 ≤ 2·8 + 12 products: the sketch spans most of the range; 5 SE bounds (t, 11 dof)
    assert bool(((ops.trace - dense.trace).abs() <= 5 * ops.trace_stderr + 1e-9).all())
    assert bool(((ops.frobenius - dense.frobenius).abs()
                 <= 5 * ops.frobenius_stderr + 1e-9).all())


def test_trajectory_window_scan_and_flat_noise_on_the_two_layer_problem(one_thread):
    subject, inits = builtin_subject("two-layer", n_seeds=2)
    run = run_window(subject, inits, 0.2, 60, torch.Generator().manual_seed(9))
    scan = window_scan(subject, run, (20, 60), n_components=4, extra_levels=(math.e,))
    assert set(scan.slopes) == {"interval", "hessian", "interval_detrended", "hessian_detrended",
                                "interval_level_2.71828"}
    assert scan.slopes["interval"].shape == (2, 2) and scan.pc_variance.shape == (2, 2, 4)
    share, count = flat_noise_share(subject.problem, inits, 0.2, 100)
    assert bool(((share >= 0) & (share <= 1)).all()) and bool((count <= 48).all())


def test_network_argument_errors(one_thread):
    subject, inits = builtin_subject("mlp", "toy", n_seeds=2, width=4)
    with pytest.raises(ValueError, match="`windows` must be step counts ≥ 20"):
        analyze_network(subject, inits, steps=2, windows=(5,), progress=False)
    with pytest.raises(ValueError, match=r"`inits` must have shape \(P ≥ 2, 12\)"):
        analyze_network(subject, inits[:1], steps=2, progress=False)
    with pytest.raises(ValueError, match="`model` must be one of two-layer, mlp, cnn"):
        builtin_subject("resnet")
    with pytest.raises(ValueError, match="`data`='toy' is a 1-D regression task"):
        builtin_subject("cnn", "toy")
    with pytest.raises(ValueError, match="non-finite parameters by step"):
        analyze_network(subject, inits * 1e3, lr=1e3, steps=40, windows=(20,), n_grad_samples=12,
                        n_components=3, progress=False)


@pytest.mark.slow
def test_two_layer_trajectory_relations_hold_short_and_reverse_long(one_thread):
    # the measured result of docs/findings-beyond.md at the default two-layer settings
    subject, inits = builtin_subject("two-layer", n_seeds=8)
    rep = analyze_network(subject, inits, lr=0.2, steps=20_000, progress=False)
    f = rep.findings
    assert f["variance_interval_trajectory@100"].verdict == "holds"
    assert f["variance_interval_trajectory@1000"].verdict == "fails"
    for name in ("flatter", "variance_interval_gradient", "variance_hessian_gradient",
                 "alignment", "condensation"):
        assert f[name].verdict == "holds", f[name].detail
    assert not any(c.holds for c in rep.controls.values())
