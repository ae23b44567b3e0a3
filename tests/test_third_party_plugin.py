"""A plug-in from another installed package: discovered through the ``smetool.plugins`` entry
point, listed, run with its own option, and cited (issue: open extension points).

The package in ``tests/plugin_package`` is built and installed with pip into a temporary folder
(``--target``, no network: the build backend is the test environment's setuptools), and smetool
runs in a subprocess with that folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).with_name("plugin_package")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(PACKAGE)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


def smetool(site: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "smetool", *argv], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


def test_an_installed_plugin_is_listed_with_its_citation(site, tmp_path):
    done = smetool(site, "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "noisy-gd" in line)
    assert "third-party test plug-in" in row and "doe2026noisy" in row


def test_an_installed_plugin_runs_with_its_own_option_and_is_cited(site, tmp_path):
    help_text = smetool(site, "verify", "noisy-gd", "--help", cwd=tmp_path).stdout
    assert "--sigma" in help_text and "gradient-noise scale" in help_text
    out = tmp_path / "run"
    done = smetool(site, "verify", "noisy-gd", "--sigma", "0.3", "--paths", "400", "--quiet",
                   "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["algorithm"] == "noisy-gd" and result["settings"]["options"] == {"sigma": 0.3}
    assert "doe2026noisy" in result["references"]
    bib = (out / "citation.bib").read_text()
    assert bib.startswith("@software{smetool") and "@article{doe2026noisy" in bib


def test_a_broken_entry_point_is_named_not_a_traceback(site, tmp_path):
    broken = tmp_path / "broken_site"
    dist = broken / "broken_plugin-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[smetool.plugins]\nbroken = no_such_module:PLUGIN\n")
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{broken}", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "smetool", "list"], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "noisy-gd" in done.stdout  # the good plug-in is still there
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("broken"))
    assert "BROKEN" in line and "broken-plugin" in line and "No module named 'no_such_module'" in line
    done = subprocess.run([sys.executable, "-m", "smetool", "verify", "broken"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_an_installed_plugin_whose_option_clashes_is_listed_broken_and_breaks_nothing(site, tmp_path):
    # On main, `Option("compile", ...)` passed the hand-copied reserved names, then every smetool
    # command, `list` included, died with argparse.ArgumentError.
    clash = tmp_path / "clash_site"
    dist = clash / "clash_plugin-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clash-plugin\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[smetool.plugins]\nclash = clash_plugin:PLUGIN\n")
    (clash / "clash_plugin.py").write_text(
        "from dataclasses import replace\n"
        "from smetool import Option\n"
        "from smetool.algorithms.sgd import PLUGINS\n"
        "PLUGIN = replace(PLUGINS[0], name='clash', options=(\n"
        "    Option('compile', str, 'yes', 'a flag smetool verify already has'),))\n")
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{clash}", OMP_NUM_THREADS="1")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "smetool", *argv], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path)

    done = run("list")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("clash "))
    assert "BROKEN" in line and "--compile" in line
    assert "noisy-gd" in done.stdout and "Traceback" not in done.stderr
    done = run("verify", "clash", "--paths", "8")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'clash' is installed but broken" in done.stderr and "--compile" in done.stderr
