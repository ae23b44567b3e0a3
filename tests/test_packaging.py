"""The package builds as an sdist and a wheel (``python -m build``), and the wheel installs and
runs on its own, away from the source tree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the build backend (setuptools) comes with the test extras, so the test needs no
    # network; the sdist is built first and the wheel from the unpacked sdist, as `build` does.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (out / "build.log").write_text(done.stdout + done.stderr)
    return out


def test_the_license_is_an_spdx_expression(dists):
    # The `project.license` table is deprecated by setuptools (an error from 2027-02-18).
    log = (dists / "build.log").read_text()
    assert "project.license" not in log and "License classifiers are deprecated" not in log, log
    with zipfile.ZipFile(dists / f"smetool-{VERSION}-py3-none-any.whl") as whl:
        metadata = whl.read(f"smetool-{VERSION}.dist-info/METADATA").decode()
        names = whl.namelist()
    assert "License-Expression: BSD-3-Clause" in metadata.splitlines()
    assert f"smetool-{VERSION}.dist-info/licenses/LICENSE" in names


def test_sdist_and_wheel_carry_the_package(dists):
    sdist = dists / f"smetool-{VERSION}.tar.gz"
    wheel = dists / f"smetool-{VERSION}-py3-none-any.whl"
    assert sdist.exists() and wheel.exists(), sorted(p.name for p in dists.iterdir())
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "LICENSE", "smetool/__init__.py"} <= names
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        entry_points = whl.read(f"smetool-{VERSION}.dist-info/entry_points.txt").decode()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "smetool").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert not any(n.startswith("tests/") for n in names)
    assert "smetool = smetool.cli:main" in entry_points


def test_wheel_installs_and_runs_away_from_the_source_tree(dists, tmp_path):
    wheel = dists / f"smetool-{VERSION}-py3-none-any.whl"
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import smetool, sys; print(smetool.__file__); print(smetool.__version__); "
            "sys.exit(smetool.cli.main(['list']))")
    done = subprocess.run([sys.executable, "-c", "import smetool.cli; " + code], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    where, version = done.stdout.splitlines()[:2]
    assert where.startswith(str(target)) and version == VERSION
    assert "dropout" in done.stdout
