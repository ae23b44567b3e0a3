"""Numbers and figures in the documentation come from records: the figures cite the record they
were drawn from, the records cite commits of this repository, a typed-over number is caught, and
the figure code draws every panel of a record (on a small synthetic one)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_description(path: Path) -> str | None:
    from PIL import Image

    with Image.open(path) as im:
        return im.text.get("Description")


def test_every_generated_figure_cites_the_record_it_is_drawn_from():
    """A record regenerated without redrawing its figures (python scripts/readme_numbers.py),
    or a figure drawn by hand, fails here."""
    pytest.importorskip("PIL")
    figures = _script("doc_figures")
    records = figures.records()
    for name, (record_name, _) in figures.FIGURES.items():
        assert figures.drawable(name, records), (
            f"{record_name}.json lacks the runs of {name}.png: regenerate it (make validation, or "
            "python scripts/doc_figures.py --run), then python scripts/readme_numbers.py")
        path = ROOT / "docs" / "figures" / f"{name}.png"
        assert path.exists(), path
        assert _png_description(path) == figures.source(record_name, records[record_name]), name


def _in_git_checkout() -> bool:
    try:
        done = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == "true"


@pytest.mark.parametrize("record", ["validation", "tutorials"])
def test_the_records_cite_commits_of_this_repository(record):
    if not _in_git_checkout():
        pytest.skip("not a git checkout")
    commit = json.loads((ROOT / "docs" / f"{record}.json").read_text())["machine"]["commit"]
    assert commit, record
    done = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"docs/{record}.json cites commit {commit}, not in this repository"


def test_a_number_typed_over_a_generated_block_is_caught():
    numbers = _script("readme_numbers")
    records = numbers._records()
    doc = "docs/tutorial-plugin.md"
    text = (ROOT / doc).read_text()
    assert numbers.rendered(text, records, doc) == text  # the committed text is the rendering
    start = text.index("<!-- summary:noisy-gd-2:begin -->")
    snr = text[start:].split("every error at ")[1].split(" standard errors")[0]
    tampered = text.replace(f"every error at {snr} standard", "every error at 99.9 standard", 1)
    assert tampered != text and numbers.rendered(tampered, records, doc) == text
    assert "docs/tutorials.json" in text and records["tutorials"]["machine"]["commit"] in text


def _synthetic_record() -> dict:
    """A small record in the validation format: solver, problem-library and plug-in rows."""
    steps = [0.1, 0.05, 0.025, 0.0125]
    weak = [-0.3 * h - 0.5 * h * h for h in steps]
    se = [1e-4] * 4
    solver = {"solver": "euler", "problem": "GBM, g = x", "theory": 1.0, "kind": "weak",
              "paths": 100, "steps": steps, "errors": weak, "stderrs": se, "verdict": "pass"}
    strong = dict(solver, kind="strong", theory=0.5, errors=[0.4 * h**0.5 for h in steps],
                  problem="GBM, E|Y − X|")
    problem = dict(solver, type="mc", problem="sciml_cubic: E X²")

    def plugin(name, order):
        errs = [0.2 * h**order + 0.1 * h ** (order + 1) for h in steps]
        return {"plugin": name, "order": order, "command": f"smetool verify {name}",
                "lrs": steps, "alpha": 0.005, "verdict": "pass", "seconds": 1.0,
                "tests": [{"test_function": g, "steps": steps, "errors": [k * e for e in errs],
                           "stderrs": [1e-5] * 4, "verdict": "pass", "slope": float(order)}
                          for g, k in (("R_S", 1.0), ("theta[3]", -2.0))],
                "controls": [{"name": "no R_1", "hard": False, "rejected": True,
                              "errors": {"R_S": [0.3] * 4, "theta[3]": [-0.2] * 4},
                              "stderrs": {"R_S": [1e-3] * 4, "theta[3]": [1e-3] * 4}}]}
    return {"machine": {"commit": "abc1234", "date_utc": "2026-01-01 00:00",
                        "uncommitted_changes": False},
            "sections": [{"kind": "solvers", "cases": [solver, strong]},
                         {"kind": "problems", "cases": [problem, dict(problem, type="exact")]},
                         {"kind": "plugins", "cases": [plugin("dropout", 1), plugin("dropout", 2),
                                                       plugin("dropout-net", 1)]}]}


def test_the_validation_figures_draw_every_row_and_the_page_links_them(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    from PIL import Image

    figures = _script("validation_figures")
    record = _synthetic_record()
    made = figures.write_figures(record, tmp_path)
    assert [p.name for p in made] == ["solvers.png", "problems.png", "plugins.png"]
    with Image.open(made[0]) as im:  # two panels in a row of three: the full grid width
        assert im.size[0] > 1000
    for kind in ("solvers", "problems", "plugins"):
        assert f"figures/validation/{kind}.png" in figures.figure_link(kind)
    assert figures.figure_link("exact") is None


def test_the_tutorial_figures_draw_from_a_record_and_cite_it(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    doc_figures = _script("doc_figures")
    records = {"validation": _synthetic_record()}
    made = doc_figures.draw_all(records, out=tmp_path)
    assert sorted(p.name for p in made) == ["tutorial-own-network.png", "verify-dropout.png"]
    for path in made:
        assert _png_description(path) == "docs/validation.json, commit abc1234, 2026-01-01 00:00 UTC"
    assert not doc_figures.drawable("tutorial-plugin", records)
