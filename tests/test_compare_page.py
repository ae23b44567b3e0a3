"""The page "Dropout, SGD, SAM and SignSGD side by side" is generated, not typed: the committed page
is the rendering of the committed record, the record is a run of the README's command (≥ 5 seeds,
every algorithm at the same training loss, within the 15-minute budget), and every verdict in it
follows from its stored per-seed values."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from smetool.analysis.findings import decide

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "compare_page.py"


def _generator():
    spec = importlib.util.spec_from_file_location("compare_page_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed():
    text = (ROOT / "docs" / "compare.json").read_text()
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))


def test_the_page_is_the_rendering_of_the_record(committed):
    assert (ROOT / "docs" / "compare.md").read_text() == _generator().render(committed)


def test_the_record_is_the_readme_command_at_its_defaults(committed):
    cfg = committed["config"]
    assert committed["command"] == ("smetool compare dropout sgd sam signsgd --model mlp --data "
                                    "digits --out DIR")
    assert cfg["n_seeds"] >= 5 and cfg["landscape"] == "mlp (digits[:64])"
    assert list(committed["trajectories"]) == ["gd", "dropout", "sgd", "sam", "signsgd"]
    for label, traj in committed["trajectories"].items():
        assert all(traj["reached"]), label  # every algorithm at the same training loss
        assert max(traj["loss"][-1]) <= cfg["target"]
    assert committed["seconds"] < 15 * 60  # the budget of the command (2 cores)
    for measure in ("sharpness", "variance_principle", "alignment", "regularizer", "accuracy"):
        assert (ROOT / "docs" / "figures" / "compare" / f"{measure}.png").exists()


def test_every_committed_verdict_follows_from_its_values(committed):
    for label, group in committed["findings"].items():
        for finding in group.values():
            assert finding["control"] is not None, (label, finding["name"])
            for f in (finding, finding["control"]):
                again = decide(f["name"], f["claim"], f["values"], f["sign"])
                assert again.verdict == f["verdict"], (label, f["name"])
                if f["interval"][0] is not None:
                    assert math.isclose(again.low, f["interval"][0], rel_tol=1e-9, abs_tol=1e-12)
