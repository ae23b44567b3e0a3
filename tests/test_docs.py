"""The documentation site builds in strict mode (broken references fail), and the public API is
documented."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import smetool

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "Euler" in api and "Parameters" in api


def test_every_public_name_has_a_docstring():
    missing = [name for name in smetool.__all__ if name != "__version__"
               and not (inspect.getdoc(getattr(smetool, name)) or "").strip()]
    assert not missing, missing


def test_nav_pages_exist():
    text = (ROOT / "mkdocs.yml").read_text()
    for line in text.splitlines():
        if line.strip().startswith("- ") and line.strip().endswith(".md"):
            page = line.split(":")[-1].strip()
            assert (ROOT / "docs" / page).exists(), page


def test_the_readme_numbers_are_the_rendering_of_the_validation_record():
    """The README's measured table is generated from docs/validation.json (the commit it names):
    a number typed by hand, or a record regenerated without re-rendering, fails here."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "readme_numbers.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_analysis_page_shows_the_committed_run():
    # docs/analysis.md quotes the table of the run in docs/figures/analysis/ verbatim; the record
    # is strict JSON and its findings are those of the table
    import json

    run = ROOT / "docs" / "figures" / "analysis"
    assert (run / "table.md").read_text() in (ROOT / "docs" / "analysis.md").read_text()
    record = json.loads((run / "report.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert record["config"]["plugin"] == "dropout" and record["config"]["n_seeds"] == 8
    from smetool.analysis.report import markdown_table

    assert markdown_table(record) == (run / "table.md").read_text()
