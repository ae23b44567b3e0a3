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
    """The acceptance of the verdicts issue: at its defaults every plug-in passes with power,
    and every declared negative control is rejected by at least one test function."""
    plugins = next(s for s in committed["sections"] if s["kind"] == "plugins")
    for case in plugins["cases"]:
        assert case["verdict"] == "pass", case["command"]
        for control in case["controls"]:
            assert control["rejected_by"], (case["command"], control["name"])


def test_every_verdict_follows_from_its_numbers(committed):
    gen = _generator()
    from smetool.stats import judge_order

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
                                            case["theory"], case["neighbours"],
                                            gen.MC_CONFIDENCE)
                assert case["verdict"] == verdict.verdict.value
            elif section["kind"] == "plugins":
                from smetool import fit_order

                for f in case["fits"]:
                    fit = fit_order(f["steps"], f["errors"], f["stderrs"], min_snr=5.0,
                                    confidence=0.95)
                    assert fit.slope == pytest.approx(f["slope"], rel=1e-9)
                    assert f["verdict"] == judge_order(fit, case["order"]).verdict.value
                verdicts = [f["verdict"] for f in case["fits"]]
                verdicts += list(case["unfitted_verdicts"].values())
                expected = ("pass" if all(v == "pass" for v in verdicts) else
                            "fail" if "fail" in verdicts else "inconclusive")
                assert case["verdict"] == expected


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
