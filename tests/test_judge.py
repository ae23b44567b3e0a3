"""The verdict layer of ``verify`` on synthetic tables, without Monte Carlo: detection limits from
the controls that scale a part of the SME, the hard controls built from them, the Bonferroni
level, and what counts as a rejected control."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smetool.algorithms.base import NegativeControl, Perturbation, SMEPart
from smetool.algorithms.sgd_scalar import ScalarQuadraticSGD
from smetool.montecarlo import WeakErrorTable
from smetool.perturbed import DiagonalNoise, DriftBlend, NoiseScaled
from smetool.sde import NoiseFree
from smetool.stats import Verdict, judge_series
from smetool.verification.judge import (
    DetectionLimits,
    bonferroni,
    detection_limits,
    hard_controls,
    judge_table,
)
from smetool.verification.result import ControlResult

LRS = (0.05, 0.04, 0.025, 0.02, 0.0125, 0.01, 0.005)
H = np.array(LRS)
SE = np.array([6.2e-6, 4.1e-6, 2.2e-6, 1.45e-6, 6.8e-7, 4.4e-7, 1.4e-7])


def _table(reference_means: np.ndarray, ref_se: np.ndarray, errors: np.ndarray,
           controls: dict | None = None) -> WeakErrorTable:
    def t(x):  # (K=1, S=1, L)
        return torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, 1, -1)

    approx = reference_means + errors
    return WeakErrorTable(
        names=("g",), times=(0.2,), steps=LRS, errors=t(errors), stderrs=t(np.hypot(SE, ref_se)),
        approx_means=t(approx), approx_stderrs=t(SE), reference_means=t(reference_means),
        reference_stderrs=t(ref_se), count=1500, seed=0, common_random_numbers=False,
        antithetic=False, exact_reference=False, variance_reduction=t(np.ones(7)),
        controls=controls or {})


def test_the_noise_limit_is_the_lower_coefficients_resolution_over_its_sensitivity():
    """E g(SME) − g(noise-free flow) = A lr exactly: scaling Σ by 1 + δ moves c₁ by −δA, so the
    limit is q·SE(c₁)/A. A control that halves Σ (change −½) sees half the sensitivity and gives
    the same limit."""
    A = 0.0114
    sme = 0.3 + A * H - 0.35 * H**2
    errors = -0.352 * H**2 + 0.55 * H**3
    flat = np.full(7, 1e-12)
    for change in (-1.0, -0.5):
        control = _table(sme - (-change) * A * H, flat, errors + (-change) * A * H)
        table = _table(sme, SE * 1e-3, errors, controls={"c": control})
        verdicts = judge_table(table, 2, 0.01)
        spec = NegativeControl("c", NoiseFree(ScalarQuadraticSGD().sme(0.1, 2)), 1.0, "",
                               Perturbation(SMEPart.NOISE_COVARIANCE, change))
        limits = detection_limits(table, verdicts, {"c": spec})[SMEPart.NOISE_COVARIANCE]
        v = verdicts["g"]
        assert limits.best == pytest.approx(v.lower_quantile * v.lower_stderr / A, rel=1e-6)
        assert limits.best_test == "g" and limits.control == "c"


def test_a_part_the_test_function_does_not_see_has_an_infinite_limit():
    sme = 0.3 + 1e-12 * H
    errors = -0.352 * H**2
    control = _table(sme, np.full(7, 1e-6), errors)
    table = _table(sme, np.full(7, 1e-6), errors, controls={"c": control})
    spec = NegativeControl("c", NoiseFree(ScalarQuadraticSGD().sme(0.1, 2)), 1.0, "",
                           Perturbation(SMEPart.NOISE_COVARIANCE, -1.0))
    limits = detection_limits(table, judge_table(table, 2, 0.01), {"c": spec})
    assert math.isinf(limits[SMEPart.NOISE_COVARIANCE].best)
    assert limits[SMEPart.NOISE_COVARIANCE].best_test is None


def test_the_hard_controls_sit_at_twice_the_limit():
    alg = ScalarQuadraticSGD()
    limits = {SMEPart.NOISE_COVARIANCE: DetectionLimits(SMEPart.NOISE_COVARIANCE, "noise-free",
                                                        {"x": 0.03, "x^2": math.inf})}
    controls = {c.name: c for c in hard_controls(alg, 0.1, 2, limits)}
    up, down = controls["Σ × 1.060"], controls["Σ × 0.940"]
    assert isinstance(up.sde, NoiseScaled) and up.sde.factor == pytest.approx(1.06)
    assert isinstance(down.sde, NoiseScaled) and down.sde.factor == pytest.approx(0.94)
    half = controls["half correction"]
    assert isinstance(half.sde, DriftBlend) and half.sde.weight == 0.5
    x = torch.tensor([[1.3]], dtype=torch.float64)
    right, first = alg.sme(0.1, 2), alg.sme(0.1, 1)
    assert torch.allclose(half.sde.drift(0, x), 0.5 * (right.drift(0, x) + first.drift(0, x)))
    assert "diagonal Σ" not in controls  # a scalar Σ is its own diagonal
    assert hard_controls(alg, 0.1, 1, limits) == ()
    wide = {SMEPart.NOISE_COVARIANCE: DetectionLimits(SMEPart.NOISE_COVARIANCE, "n", {"x": 0.6})}
    assert [c.name for c in hard_controls(alg, 0.1, 2, wide)] == ["Σ × 2.200", "half correction"]


def test_the_diagonal_control_drops_the_correlations():
    from smetool.algorithms.registry import get_plugin

    alg = get_plugin("sgd").build()
    sde = alg.sme(0.125, 2)
    diag = DiagonalNoise(sde)
    x = alg.initial_state(3, dtype=torch.float64) + 0.1
    B = sde.diffusion(0.0, x)
    cov = B @ B.transpose(1, 2)
    assert torch.allclose(diag.diffusion(0.0, x) ** 2, torch.diagonal(cov, dim1=1, dim2=2))
    names = [c.name for c in hard_controls(alg, 0.125, 2, {})]
    assert names == ["diagonal Σ", "half correction"]


def test_the_level_of_each_test_function_is_bonferroni():
    assert bonferroni(0.01, ["a", "b", "c", "d"]) == pytest.approx(0.0025)
    assert bonferroni(0.01, []) == pytest.approx(0.01)


def _control(verdicts: dict[str, Verdict]) -> ControlResult:
    def fake(v):
        e = {Verdict.FAIL: 0.01 + 0.3 * H, Verdict.PASS: 0.3 * H + 2 * H**2,
             Verdict.INCONCLUSIVE: 1e-9 * H}[v]
        return judge_series(H, e, np.full(7, 1e-6), 1)

    made = {k: fake(v) for k, v in verdicts.items()}
    assert {k: m.verdict for k, m in made.items()} == verdicts
    return ControlResult("c", "", 0.0, {}, made, weak_errors=None)  # type: ignore[arg-type]


def test_a_control_is_rejected_only_when_a_test_function_fails_it():
    """An inconclusive (or passed) verdict is not a rejection: a check that cannot tell a wrong
    SME apart proves nothing about it."""
    assert not _control({"a": Verdict.INCONCLUSIVE, "b": Verdict.PASS}).rejected
    assert not _control({"a": Verdict.INCONCLUSIVE}).rejected
    both = _control({"a": Verdict.INCONCLUSIVE, "b": Verdict.FAIL})
    assert both.rejected and both.rejected_by == {"a": False, "b": True}
