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
    kinds = [s["kind"] for s in committed["sections"]]
    # The problem-library section is newer than the committed record; a record generated
    # before it existed may lack that section only (the next full regeneration adds it).
    expected = [k for k in gen.SECTIONS if k != "problems" or "problems" in kinds]
    assert kinds == expected
    assert committed["machine"]["commit"] and committed["machine"]["cpu_count"] >= 1
    from smetool.algorithms.registry import plugins
    from smetool.solvers import SOLVERS

    by_kind = {s["kind"]: s for s in committed["sections"]}
    # Plug-ins added after the committed record was generated may be missing from it until the
    # next full regeneration (as the problem-library section above); no other may be.
    newer = {"usam", "sam", "signsgd", "sgd-wd"}
    recorded = {c["plugin"] for c in by_kind["plugins"]["cases"]}
    assert set(plugins()) - newer <= recorded <= set(plugins())
    assert {c["solver"] for c in by_kind["solvers"]["cases"]} == set(SOLVERS)


def test_every_verdict_follows_from_its_numbers(committed):
    gen = _generator()
    for section in committed["sections"]:
        for case in section["cases"]:
            if section["kind"] == "exact":
                slopes = [math.log(abs(a / b)) / math.log(h / k) for a, b, h, k in zip(
                    case["errors"], case["errors"][1:], case["steps"], case["steps"][1:])]
                assert slopes == pytest.approx(case["local_slopes"], rel=1e-12)
                assert case["passed"] == (abs(slopes[-1] - case["theory"]) <= gen.EXACT_TOLERANCE)
            elif section["kind"] == "solvers":
                snr = min(abs(e) / s for e, s in zip(case["errors"], case["stderrs"]))
                assert snr == pytest.approx(case["min_snr"], rel=1e-12)
                inside = case["ci"] is not None and case["ci"][0] <= case["theory"] <= case["ci"][1]
                assert case["passed"] == (snr >= gen.MC_MIN_SNR and inside)
            elif section["kind"] == "problems" and case["type"] == "exact":
                slopes = [math.log(abs(a / b)) / math.log(h / k) for a, b, h, k in zip(
                    case["errors"], case["errors"][1:], case["steps"], case["steps"][1:])]
                assert slopes == pytest.approx(case["local_slopes"], rel=1e-12)
                assert case["passed"] == (abs(slopes[-1] - case["theory"]) <= gen.EXACT_TOLERANCE)
            elif section["kind"] == "problems":
                snr = min(abs(e) / s for e, s in zip(case["errors"], case["stderrs"]))
                ci = case["ci"]
                inside = ci is not None and ci[0] <= case["theory"] <= ci[1]
                excludes = ci is not None and not ci[0] <= case["neighbour"] <= ci[1]
                assert case["passed"] == (snr >= gen.MC_MIN_SNR and inside and excludes)
            elif section["kind"] == "plugins":
                for fit in case["fits"]:
                    assert fit["contains"] == (fit["ci"][0] <= case["order"] <= fit["ci"][1])
                expected = all(f["contains"] for f in case["fits"]) if case["fits"] else None
                assert case["passed"] == expected


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
