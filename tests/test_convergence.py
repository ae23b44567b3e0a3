"""smetool.convergence and smetool.work_precision: errors against exact discrete moments, the
verdict on right and wrong orders, the references, reproducibility and input checks.

Statistical bounds: every comparison of a Monte-Carlo error with an exact one uses z = 4.4
(two-sided 1e-5 per comparison; fewer than 100 comparisons in this file, so a family-wise
false-failure probability below 1e-3). Seeds are fixed (0 unless written) and were not chosen.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import smetool
from smetool import ConvergenceResult, FunctionSDE, convergence, work_precision
from smetool.exact import (
    gbm_em_moments,
    gbm_moment,
    gbm_platen_moments,
    library_problem,
)
from smetool.solvers import EulerMaruyama
from smetool.stats import Verdict

Z = 4.4
STEPS = [1 / 8, 1 / 16, 1 / 32, 1 / 64]


def _exact_errors(moments, mu, sigma, steps, k=0):
    return [moments(mu, sigma, 1.0, h, round(1 / h))[k] - gbm_moment(mu, sigma, 1.0, 1.0, k + 1)
            for h in steps]


def _within(result: ConvergenceResult, name: str, exact: list[float]) -> None:
    _, e, se = result.series(name)
    z = [(a - b) / s for a, b, s in zip(e, exact, se)]
    assert max(abs(v) for v in z) < Z, z


def test_euler_on_gbm_matches_its_exact_discrete_moments_and_passes():
    """E Y_n of Euler–Maruyama on GBM is x0 (1 + μh)^n exactly: the measured errors (with the
    exact solution on the same path as control variate) agree with it, and order 1 passes."""
    result = convergence(library_problem("gbm"), method="euler", dts=STEPS,
                         test_functions=["x", "x^2"], paths=20_000)
    _within(result, "x", _exact_errors(gbm_em_moments, 1.0, 0.5, STEPS, 0))
    _within(result, "x^2", _exact_errors(gbm_em_moments, 1.0, 0.5, STEPS, 1))
    assert result.verdict is Verdict.PASS, result.reasons
    assert result.reference.startswith("exact solution on the same Brownian path")
    # the control variate: the variance falls like 1/h from Var X_1 (about 4.7 for g = x)
    assert min(result.variance_reduction[0]) > 5 and result.variance_reduction[0][-1] > 100


def test_platen_weak_order_two_on_gbm():
    steps = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    result = convergence(library_problem("gbm", mu=1.5, sigma=0.2), method="platen", dts=steps,
                         test_functions=["x"], paths=20_000)
    _within(result, "x", _exact_errors(gbm_platen_moments, 1.5, 0.2, steps, 0))
    assert result.order == 2 and result.verdict is Verdict.PASS, result.reasons


def test_a_wrong_claim_fails():
    """Euler–Maruyama claimed at weak order 2: its errors demand the h¹ term."""
    result = convergence(library_problem("gbm"), method="euler", dts=STEPS, test_functions=["x"],
                         paths=20_000, order=2)
    assert result.verdict is Verdict.FAIL
    assert "demand a term of order 1" in str(result.verdicts["x"])


class DriftOffEuler(EulerMaruyama):
    """Euler–Maruyama with the drift 5 % too large: inconsistent, an O(1) error."""

    name = "euler-drift-off"

    def step(self, sde, t, x, h, dW, generator):
        return super().step(sde, t, x, h, dW, generator) + 0.05 * h * sde.drift(t, x)


def test_an_inconsistent_scheme_of_ones_own_fails():
    result = convergence(library_problem("gbm"), method=DriftOffEuler(), dts=STEPS,
                         test_functions=["x"], paths=20_000)
    assert result.method == "euler-drift-off" and result.order == 1
    assert result.verdict is Verdict.FAIL, result.table()
    assert "an O(1) term" in str(result.verdicts["x"])


def test_the_extrapolated_reference_has_no_visible_bias():
    """Against Platen at h/4, h/2, h on the same Brownian path (Richardson), the Euler errors on
    GBM agree with the exact discrete moments, and the coupling cuts the variance."""
    steps = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    result = convergence(library_problem("gbm"), method="euler", dts=steps, test_functions=["x"],
                         paths=4_000, reference="extrapolated")
    assert result.settings["reference_method"] == "platen"
    assert result.settings["reference_dt"] == pytest.approx(steps[-1] / 4)
    _within(result, "x", _exact_errors(gbm_em_moments, 1.0, 0.5, steps, 0))
    assert min(result.variance_reduction[0]) > 5
    fine = convergence(library_problem("gbm"), method="euler", dts=[1 / 2, 1 / 4, 1 / 8],
                       test_functions=["x"], paths=200, reference="fine",
                       reference_method="euler")
    assert fine.settings["reference_dt"] == pytest.approx(1 / 128)
    assert "euler at h = 0.0078125 on the same Brownian path" == fine.reference


def test_expectations_reference_and_a_partial_solution_on_the_path():
    """The non-commutative problem has no solution but X_1 on the path: 'auto' uses it for x1^2;
    asking for x2 too falls back to the expectations; 'solution' with x2 is refused."""
    problem = library_problem("noncommutative")
    steps = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    with_path = convergence(problem, method="euler", dts=steps, test_functions=["x1^2"],
                            paths=4_000)
    assert with_path.settings["reference"] == "solution"
    both = convergence(problem, method="euler", dts=steps, test_functions=["x1^2", "x2"],
                       paths=4_000)
    assert both.settings["reference"] == "expectations"
    # the same errors, the control variate's far more precise
    a, b = with_path.series("x1^2"), both.series("x1^2")
    assert all(abs(x - y) < Z * math.hypot(s, t) for x, y, s, t in zip(a[1], b[1], a[2], b[2]))
    assert with_path.stderrs[0][-1] * 5 < both.stderrs[0][-1]
    with pytest.raises(ValueError, match="x2 has none"):
        convergence(problem, method="euler", dts=steps, test_functions=["x2"], paths=100,
                    reference="solution")


def test_strong_orders_and_a_wrong_strong_claim():
    problem = library_problem("gbm", mu=0.5, sigma=1.0)
    steps = [2.0**-k for k in range(4, 8)]
    milstein = convergence(problem, method="milstein", dts=steps, kind="strong", paths=4_000)
    assert milstein.names == ("E|Y-X|",) and milstein.spacing == 0.5 and milstein.order == 1
    assert milstein.verdict is Verdict.PASS, milstein.reasons
    euler = convergence(problem, method="euler", dts=steps, kind="strong", paths=4_000, order=1)
    assert euler.verdict is Verdict.FAIL, euler.table()


def test_a_user_sde_with_its_solution_and_a_plain_sde_with_an_extrapolated_reference():
    mu, sigma = 1.0, 0.5
    sde = FunctionSDE(lambda t, x: mu * x, lambda t, x: sigma * x, noise_kind="diagonal")

    def solution(t, W):
        return torch.exp((mu - sigma**2 / 2) * t + sigma * W)

    result = convergence(sde, [1.0], "euler", STEPS, test_functions={"x": lambda x: x[:, 0]},
                         reference=solution, paths=10_000)
    _within(result, "x", _exact_errors(gbm_em_moments, mu, sigma, STEPS, 0))
    plain = convergence(sde, [1.0], "euler", STEPS, paths=5_000)
    assert plain.names == ("x1", "x1^2") and plain.settings["reference"] == "extrapolated"
    _within(plain, "x1", _exact_errors(gbm_em_moments, mu, sigma, STEPS, 0))


def test_same_seed_same_numbers():
    """Bit-identical for the same seed and chunks (the engine's contract: chunks are pure
    functions of their index); other chunks or another seed give other, consistent draws."""
    problem = library_problem("gbm")
    kwargs = dict(method="euler", dts=STEPS[:3], test_functions=["x"], paths=600, chunk_size=200)
    a, b = convergence(problem, **kwargs), convergence(problem, **kwargs)
    c = convergence(problem, **(kwargs | {"seed": 1}))
    assert a.errors == b.errors and a.stderrs == b.stderrs
    assert a.errors != c.errors
    assert all(abs(x - y) < Z * math.hypot(s, t) for x, y, s, t in
               zip(a.errors[0], c.errors[0], a.stderrs[0], c.stderrs[0]))


def test_report_plot_and_strict_json(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    result = convergence(library_problem("gbm"), method="euler", dts=STEPS, test_functions=["x"],
                         paths=2_000)
    text = result.table()
    assert "verdict: pass" in text and "c[h^0]" in text and "var.red." in text
    record = json.loads(result.to_json(str(tmp_path / "r.json")),
                        parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert record["verdict"] == "pass" and record["tests"][0]["errors"] == list(result.errors[0])
    assert json.loads((tmp_path / "r.json").read_text()) == record
    fig = result.plot(str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 10_000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_xticks()) == len(STEPS)
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(dts=[0.5, 0.25]), "at least 3 steps"),
    (dict(dts=[0.3, 0.2, 0.1]), "whole number of steps"),
    (dict(kind="mean"), "`kind` must be 'weak' or 'strong'"),
    (dict(reference="nearby"), "`reference` must be one of"),
    (dict(kind="strong", reference="extrapolated"), "'solution' or 'fine' for strong"),
    (dict(reference="extrapolated", reference_dt=0.03), "`reference_dt`"),
    (dict(paths=1), "`paths` must be an integer ≥ 2"),
    (dict(false_failure=1.5), "`false_failure` must be in"),
    (dict(test_functions=["nope"]), "`test_functions` must be observables of gbm.* \\(x, x\\^2, x\\^3\\)"),
    (dict(method="platen", kind="strong"), "declares no strong order"),
])
def test_bad_input_is_refused_before_any_path(kwargs, match):
    options = dict(method="euler", dts=STEPS, paths=100) | kwargs
    with pytest.raises(ValueError, match=match):
        convergence(library_problem("gbm"), **options)


def test_a_library_problem_keeps_its_own_initial_state_and_users_functions_use_its_solution():
    with pytest.raises(ValueError, match="exact references hold from x0 = \\[1.0\\]"):
        convergence(library_problem("gbm"), [2.0], "euler", STEPS, paths=100)
    with pytest.raises(ValueError, match="at t0 = 0"):
        convergence(library_problem("gbm"), method="euler", dts=[0.25, 0.125, 0.0625],
                    t_span=(0.5, 1.5), paths=100)
    result = convergence(library_problem("gbm"), method="euler", dts=STEPS, paths=4_000,
                         test_functions={"cube": lambda x: x[:, 0] ** 3})
    assert result.settings["reference"] == "solution"  # g on the problem's exact solution
    assert result.variance_reduction[0][-1] > 10
    longer = convergence(library_problem("gbm"), method="euler", dts=[0.5, 0.25, 0.125],
                         test_functions=["x"], t_span=(0.0, 2.0), paths=4_000)
    exact = [gbm_em_moments(1.0, 0.5, 1.0, h, round(2 / h))[0] - gbm_moment(1.0, 0.5, 1.0, 2.0)
             for h in (0.5, 0.25, 0.125)]
    _within(longer, "x", exact)


def test_strong_errors_need_a_brownian_path_and_an_sde_needs_x0():
    sampled = library_problem("additive", noise_kind="sampled")
    with pytest.raises(ValueError, match="strong errors need a Brownian path"):
        convergence(sampled, method="euler", dts=STEPS, kind="strong", paths=100)
    with pytest.raises(ValueError, match="`x0` is needed"):
        convergence(FunctionSDE(lambda t, x: -x, lambda t, x: x), None, "euler", STEPS)
    with pytest.raises(smetool.UnsupportedError):
        convergence(library_problem("noncommutative"), method="milstein", dts=STEPS)


def test_sampled_noise_weak_order_against_the_expectations():
    result = convergence(library_problem("additive", noise_kind="sampled"), method="euler",
                         dts=[1 / 4, 1 / 8, 1 / 16, 1 / 32], test_functions=["x1^2"],
                         paths=4_000)
    assert result.settings["reference"] == "expectations"
    assert result.verdict is not Verdict.FAIL


def test_work_precision(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    wp = work_precision(library_problem("gbm", mu=1.5, sigma=0.2), methods=["euler", "platen"],
                        dts=[1 / 4, 1 / 8, 1 / 16], test_functions=["x"], paths=2_000,
                        timing_paths=500, repeats=1)
    assert list(wp.results) == ["euler", "platen"]
    assert all(len(s) == 3 and all(x > 0 for x in s) for s in wp.seconds.values())
    assert "work-precision" in wp.table() and "platen (order 2" in wp.table()
    record = json.loads(wp.to_json(str(tmp_path / "wp.json")))
    assert set(record["methods"]) == {"euler", "platen"}
    wp.plot(str(tmp_path / "wp.png"))
    assert (tmp_path / "wp.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="distinct solvers"):
        work_precision(library_problem("gbm"), methods=["euler", "euler"])


def test_problem_library_by_name():
    from smetool.exact import PROBLEMS, problem_parameters

    assert {"gbm", "noncommutative", "sciml_cubic", "rotation"} <= set(PROBLEMS)
    assert problem_parameters("gbm") == {"mu": 1.0, "sigma": 0.5, "x0": 1.0, "T": 1.0}
    with pytest.raises(ValueError, match="has no parameter 'nu'"):
        library_problem("gbm", nu=1)
    with pytest.raises(ValueError, match="`problem` must be one of"):
        library_problem("nope")
    nc = library_problem("noncommutative")
    W = torch.zeros(3, 2, dtype=torch.float64)
    # X_1 on the path: exp((a − (b1² + b2²)/2) t), and E X_1(1)² = e^{−1}
    rate = -273 / 512 - (1 / 16 + 1 / 256) / 2
    assert nc.path_value("x1")(1.0, W) == pytest.approx(math.exp(rate))
    assert nc.observable("x1^2").expectation(1.0) == pytest.approx(math.exp(-1.0))
    assert nc.path_value("x2") is None
