"""The dropout analysis on the plug-in's own problem (the 1-D task of ``smetool analyze dropout``):
the papers' qualitative findings at the default settings, each decided by its verdict.

Every finding is decided inside :func:`smetool.analysis.analyze` by the 98 % t-interval of its
per-seed statistic over 8 initializations; the tests assert those verdicts, so a finding that
stops reproducing fails with the report's numbers. Measured (lr 0.2, keep_prob 0.9, 8 seeds,
20,000 steps; docs/analysis.md): dropout ends flatter than GD, its gradient noise obeys the
inverse variance–flatness and Hessian–variance relations, α(H, Σ) is far above its
random-eigenbasis baseline, dropout condenses the neurons and ends with a smaller R_1 than GD.
"""

import json

import pytest
import torch

from smetool.algorithms import get_plugin
from smetool.analysis import Settings, analyze, initial_points
from smetool.cli_analysis import OWN_SEEDS


@pytest.fixture(scope="module")
def report():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batched ops: intra-op threads only add latency
    spec = get_plugin("dropout")
    algorithm = spec.build_for_analysis()
    inits = initial_points(algorithm.landscape(), OWN_SEEDS)
    try:
        # the trajectory windows are the slow test of tests/test_analysis_pipeline.py
        yield analyze(algorithm, inits, lr=spec.analysis.lr, steps=spec.analysis.steps,
                      windows=(), progress=False, settings=Settings(n_noise=2000))
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["flatter", "variance_interval_gradient",
                                  "variance_hessian_gradient", "alignment", "condensation",
                                  "regularizer", "variance_principle"])
def test_the_papers_findings_hold_and_their_controls_do_not(report, name):
    f = report.findings["dropout"][name]
    assert f.verdict == "holds", f"{f.claim}: {f.detail}"
    assert f.control is not None and not f.control.holds, f.control.detail


def test_report_structure(report):
    assert list(report.trajectories) == ["gd", "dropout"]
    assert report.config["landscape"] == "two-layer" and report.config["n_seeds"] == 8
    assert report.config["steps"] == 20_000 and report.config["lrs"] == {"gd": 0.2, "dropout": 0.2}
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d["findings"]["dropout"]) == set(report.findings["dropout"])
    assert d["measurements"]["regularizer"]["dropout"]["regularizer"] == "R_1"
