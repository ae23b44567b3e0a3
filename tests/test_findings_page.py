"""The page "The findings beyond two-layer networks" is generated, not typed: the committed page is
the rendering of the committed record, the record is a full run, every verdict in it follows from
its stored per-seed values, and the generator runs end to end (in its fast mode)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from smetool.analysis.findings import decide

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "findings_beyond.py"


def _generator():
    spec = importlib.util.spec_from_file_location("findings_beyond_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed():
    return json.loads((ROOT / "docs" / "findings_beyond.json").read_text())


def test_the_record_is_strict_json():
    text = (ROOT / "docs" / "findings_beyond.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_the_page_is_the_rendering_of_the_record(committed):
    assert (ROOT / "docs" / "findings-beyond.md").read_text() == _generator().render(committed)


def test_the_record_is_a_full_run_of_three_networks(committed):
    assert committed["fast"] is False
    assert [a["key"] for a in committed["architectures"]] == ["two-layer", "mlp", "cnn"]
    for a in committed["architectures"]:
        assert a["report"]["config"]["n_seeds"] >= 5  # the verdicts' intervals need a spread
        assert a["report"]["config"]["settings"]["windows"] == [100, 1000]
    assert committed["seconds"] < 20 * 60  # the budget of one regeneration (2 cores)
    for a in committed["architectures"]:
        assert (ROOT / "docs" / "figures" / "beyond" / a["key"] / "variance_flatness.png").exists()


def _verdicts_follow_from_values(record):
    for a in record["architectures"]:
        for finding in a["report"]["findings"]["dropout"].values():
            for f in (finding, finding["control"]):
                again = decide(f["name"], f["claim"], f["values"], f["sign"])
                assert again.verdict == f["verdict"], (a["key"], f["name"])
                if f["interval"][0] is not None:
                    assert math.isclose(again.low, f["interval"][0], rel_tol=1e-9, abs_tol=1e-12)


def test_every_committed_verdict_follows_from_its_values(committed):
    _verdicts_follow_from_values(committed)


def test_the_generator_runs_end_to_end_in_fast_mode(tmp_path):
    pytest.importorskip("matplotlib")
    gen = _generator()
    assert gen.main(["--fast", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "findings_beyond.json").read_text())
    assert record["fast"] is True and len(record["architectures"]) == 3
    _verdicts_follow_from_values(record)
    page = (tmp_path / "findings-beyond.md").read_text()
    assert page == gen.render(record)
    assert "## Why the trajectory relations depend on the window" in page
    assert (tmp_path / "figures" / "beyond" / "window_scan.png").exists()
    assert gen.main(["--render-only", "--out", str(tmp_path)]) == 0
