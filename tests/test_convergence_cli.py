"""``smetool convergence``: every row of the validation page's solver section in one call, a
user's problem, SDE and scheme as MODULE:OBJECT, and the input checks (one line, exit 2)."""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
import textwrap
from pathlib import Path

import pytest
from scipy import stats

from smetool.cli import main
from smetool.cli_convergence import parse_steps

ROOT = Path(__file__).resolve().parents[1]


def _validation():
    spec = importlib.util.spec_from_file_location("validation_script",
                                                  ROOT / "scripts" / "validation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VALIDATION = _validation()
SOLVER_ROWS = next(s for s in json.loads((ROOT / "docs" / "validation.json").read_text())
                   ["sections"] if s["kind"] == "solvers")["cases"]
N_POINTS = sum(len(c["steps"]) for c in SOLVER_ROWS)
# Bonferroni over every point of the section: a family-wise false-failure probability of 1e-3
BOUND = stats.norm.ppf(1 - 1e-3 / (2 * N_POINTS))


def test_every_row_of_the_solver_section_has_its_call():
    for c in SOLVER_ROWS:
        assert VALIDATION.convergence_command(c["solver"], c["kind"], c["problem"]), c["problem"]


@pytest.mark.parametrize("row", range(len(SOLVER_ROWS)),
                         ids=[f"{c['solver']}-{c['kind']}-{i}" for i, c in enumerate(SOLVER_ROWS)])
def test_one_call_reproduces_the_validation_row(row, tmp_path):
    """The same verdict as the committed record, and every error within its standard errors of
    the record's (independent seeds: the page's and this run's errors are independent)."""
    case = SOLVER_ROWS[row]
    command = VALIDATION.convergence_command(case["solver"], case["kind"], case["problem"])
    out = tmp_path / "r.json"
    assert main(shlex.split(command)[1:] + ["--quiet", "--json", str(out)]) == 0
    mine = json.loads(out.read_text())
    assert mine["steps"] == pytest.approx(case["steps"])
    assert mine["order"] == case["theory"] and mine["kind"] == case["kind"]
    assert mine["n_paths"] == case["paths"]
    test = mine["tests"][0]
    z = [(a - b) / math.hypot(s, t) for a, b, s, t in
         zip(test["errors"], case["errors"], test["stderrs"], case["stderrs"])]
    assert max(map(abs, z)) < BOUND, z
    assert mine["verdict"] == case["verdict"] == "pass", mine["reasons"]


def test_parse_steps():
    assert parse_steps("2^-2..2^-4") == [0.25, 0.125, 0.0625]
    assert parse_steps("0.1, 0.05,2^-5") == [0.1, 0.05, 2**-5]
    for bad in ("0.1,0.05", "2^-a..2^-3,1", "1..3,1,1", "0.1,-0.05,0.01"):
        with pytest.raises(Exception):
            parse_steps(bad)


@pytest.mark.parametrize("args, message", [
    (["nope"], "PROBLEM must be one of gbm, noncommutative"),
    (["gbm", "--set", "nu=1"], "problem 'gbm' has no parameter 'nu'"),
    (["gbm", "--set", "mu"], "argument --set: must be NAME=VALUE"),
    (["gbm", "--dts", "0.5,0.25"], "argument --dts: give at least 3 steps"),
    (["gbm", "--dts", "0.3,0.2,0.1"], "must be a whole number of steps of `dts`"),
    (["gbm", "--test", "y"], "--test must be one of x, x^2, x^3"),
    (["gbm", "--method", "rk4"], "--method must be one of euler, milstein, platen, heun"),
    (["gbm", "--method", "no_such_module:Scheme"], "cannot import module 'no_such_module'"),
    (["no_such_module:problem"], "cannot import module 'no_such_module'"),
    (["gbm", "--kind", "strong", "--reference", "expectations"], "'solution' or 'fine' for"),
    (["gbm", "--false-failure", "2"], "--false-failure must be in (0, 1)"),
    (["gbm", "--paths", "0"], "argument --paths: must be a positive integer"),
])
def test_bad_input_is_one_line_with_exit_status_2(args, message, capsys):
    try:
        status = main(["convergence", *args, "--quiet"])
    except SystemExit as exc:  # argparse's own errors exit from the parser
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


USER_MODULE = '''
import torch
import smetool
from smetool.exact import library_problem

MU, SIGMA = 1.0, 0.5
sde = smetool.FunctionSDE(lambda t, x: MU * x, lambda t, x: SIGMA * x, noise_kind="diagonal")


def problem(mu=1.0):
    return library_problem("gbm", mu=mu)


def first(x):
    return x[:, 0]


class MyEuler(smetool.EulerMaruyama):
    name = "my-euler"


class Sloppy(smetool.EulerMaruyama):
    """Drift 5 % too large: an inconsistent scheme."""
    name = "sloppy"

    def step(self, sde, t, x, h, dW, generator):
        return super().step(sde, t, x, h, dW, generator) + 0.05 * h * sde.drift(t, x)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_sde_module.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_sde_module"


def test_a_users_problem_sde_and_scheme(user_module, tmp_path, capsys):
    fast = ["--dts", "2^-2..2^-5", "--paths", "4000", "--quiet"]
    out = tmp_path / "a.json"
    assert main(["convergence", f"{user_module}:problem", "--set", "mu=1.5", "--method",
                 f"{user_module}:MyEuler", "--test", "x", "--json", str(out), *fast]) == 0
    record = json.loads(out.read_text())
    assert record["method"] == "my-euler" and record["problem"].startswith("gbm(mu=1.5")
    assert record["verdict"] == "pass"
    assert main(["convergence", f"{user_module}:sde", "--x0", "1", "--test",
                 f"{user_module}:first", "--json", str(out), *fast]) == 0
    record = json.loads(out.read_text())
    assert record["tests"][0]["test_function"] == "first"
    assert record["settings"]["reference"] == "extrapolated"
    # an inconsistent scheme fails its order: exit status 1
    assert main(["convergence", "gbm", "--method", f"{user_module}:Sloppy", "--test", "x",
                 *fast]) == 1
    assert "verdict: fail" in capsys.readouterr().out
    assert main(["convergence", f"{user_module}:sde", "--quiet"]) == 2
    assert "--x0 is needed" in capsys.readouterr().err
    assert main(["convergence", f"{user_module}:sde", "--x0", "1", "--test", "x",
                 "--quiet"]) == 2
    assert "--test NAME needs a library problem" in capsys.readouterr().err


def test_several_methods_with_plots_and_a_work_precision_diagram(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot, wp, out = tmp_path / "c.png", tmp_path / "wp.png", tmp_path / "wp.json"
    assert main(["convergence", "gbm", "--set", "mu=1.5", "--set", "sigma=0.2", "--method",
                 "euler", "--method", "platen", "--test", "x", "--dts", "2^-2..2^-4",
                 "--paths", "2000", "--plot", str(plot), "--work-precision", str(wp),
                 "--timing-paths", "300", "--json", str(out), "--quiet"]) == 0
    assert (tmp_path / "c-euler.png").exists() and (tmp_path / "c-platen.png").exists()
    assert wp.stat().st_size > 10_000
    assert set(json.loads(out.read_text())["methods"]) == {"euler", "platen"}
    assert "work-precision on gbm" in capsys.readouterr().out
