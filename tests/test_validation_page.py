"""The validation page is generated, not typed: the committed page is the rendering of the
committed record, each verdict in the record follows from its own numbers, and the generator runs
end to end (in its fast mode)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "validation.py"


def _generator():
    spec = importlib.util.spec_from_file_location("validation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed():
    return json.loads((ROOT / "docs" / "validation.json").read_text())


def test_the_page_is_the_rendering_of_the_record(committed):
    assert (ROOT / "docs" / "validation.md").read_text() == _generator().render(committed)


def test_the_record_is_a_full_run_of_every_section(committed):
    gen = _generator()
    assert committed["fast"] is False
    assert [s["kind"] for s in committed["sections"]] == list(gen.SECTIONS)
    assert committed["machine"]["commit"] and committed["machine"]["cpu_count"] >= 1
    from smetool.algorithms.registry import plugins
    from smetool.solvers import SOLVERS

    by_kind = {s["kind"]: s for s in committed["sections"]}
    recorded = {(c["plugin"], c["order"]) for c in by_kind["plugins"]["cases"]}
    assert recorded == {(name, o) for name, spec in plugins().items() for o in spec.orders}
    assert {c["solver"] for c in by_kind["solvers"]["cases"]} == set(SOLVERS)


def test_every_plugin_verdict_is_decisive_and_every_control_rejected(committed):
    """The acceptance of the verdicts issue: at its defaults every plug-in passes, every negative
    control — declared or built from the detection limits — is failed, and every order-2 check of
    the noise states its detection limit for Σ (the dropout one at most 5 %)."""
    plugins = next(s for s in committed["sections"] if s["kind"] == "plugins")
    for case in plugins["cases"]:
        assert case["verdict"] == "pass", (case["command"], case["reasons"])
        for control in case["controls"]:
            assert control["rejected"] and control["rejected_by"], (case["command"], control["name"])
        if case["order"] == 2:
            limit = case["limits"]["noise covariance Σ"]["best"]
            assert limit is not None, case["command"]
            assert {c["name"] for c in case["controls"] if c["hard"]} >= {"half correction"}
            if case["plugin"] == "dropout":
                assert limit <= 0.05, limit


def test_every_exact_reference_agrees_within_its_standard_errors(committed):
    """Wherever a closed form exists, every recorded error (or, for sgd-wd, the SME side's mean)
    is within z of its standard errors of it, z the Bonferroni bound for a family-wise
    false-failure probability of 1e-3 over all the page's comparisons."""
    from scipy import stats

    plugins = next(s for s in committed["sections"] if s["kind"] == "plugins")
    zs = [z for case in plugins["cases"] for f in case["tests"]
          for z in (f.get("exact_z") or f.get("sme_exact_z") or [])]
    assert len(zs) >= 40
    bound = stats.norm.ppf(1 - 1e-3 / (2 * len(zs)))
    assert max(abs(z) for z in zs) <= bound, max(abs(z) for z in zs)
    covered = {case["plugin"] for case in plugins["cases"]
               if any(f.get("exact_z") or f.get("sme_exact_z") for f in case["tests"])}
    assert {"sgd", "usam", "sgd-wd", "momentum", "svag", "sgd-scalar"} <= covered


def test_every_verdict_follows_from_its_numbers(committed):
    gen = _generator()
    from smetool.stats import judge_series

    for section in committed["sections"]:
        for case in section["cases"]:
            if "local_slopes" in case:  # exact: the scheme's own moments
                slopes = [math.log(abs(a / b)) / math.log(h / k) for a, b, h, k in zip(
                    case["errors"], case["errors"][1:], case["steps"], case["steps"][1:])]
                assert slopes == pytest.approx(case["local_slopes"], rel=1e-12)
                ok = abs(slopes[-1] - case["theory"]) <= gen.EXACT_TOLERANCE
                assert case["verdict"] == ("pass" if ok else "fail")
            elif section["kind"] in ("solvers", "problems"):
                snr = min(abs(e) / s for e, s in zip(case["errors"], case["stderrs"]))
                assert snr == pytest.approx(case["min_snr"], rel=1e-12)
                _, verdict = gen.mc_verdict(case["steps"], case["errors"], case["stderrs"],
                                            case["theory"], case["kind"])
                assert case["verdict"] == verdict.verdict.value
            elif section["kind"] == "plugins":
                verdicts = []
                for f in case["tests"]:
                    v = judge_series(f["steps"], f["errors"], f["stderrs"], case["order"],
                                     alpha=case["alpha"])
                    assert f["verdict"] == v.verdict.value, (case["command"], f["test_function"])
                    verdicts.append(v)
                for control in case["controls"]:
                    failed = sorted(
                        name for name in control["errors"]
                        if judge_series(case["lrs"], control["errors"][name],
                                        control["stderrs"][name], case["order"],
                                        alpha=case["alpha"]).failed)
                    assert failed == control["rejected_by"], (case["command"], control["name"])
                    assert control["rejected"] == bool(failed)
                expected = ("fail" if any(v.failed for v in verdicts) else
                            "pass" if all(v.acceptable for v in verdicts)
                            and any(v.passed for v in verdicts)
                            and all(c["rejected"] for c in case["controls"]) else "inconclusive")
                assert case["verdict"] == expected, case["command"]


def test_the_generator_runs_end_to_end_in_fast_mode(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--fast", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "validation.json").read_text())
    page = (tmp_path / "validation.md").read_text()
    assert record["fast"] is True and "Fast mode" in page
    assert page == _generator().render(record)
    for title in ("Exact references", "Solvers", "Plug-ins", "Benchmarks"):
        assert f"## {title}" in page
    bench = next(s for s in record["sections"] if s["kind"] == "benchmarks")
    ratios = {k for c in bench["cases"] for k in c["ratios"]}
    assert {"torchsde / smetool", "smetool / plain", "smetool / torchsde"} <= ratios
