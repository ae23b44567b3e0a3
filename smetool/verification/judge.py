"""The verdicts of a verification and their power: the series test per test function, the
detection limits in the SME's own terms, and the hard negative controls built from them.

Every test function of an order-``p`` check is judged by :func:`~smetool.judge_series` at the
false-failure probability ``α / K`` (``K`` test functions, Bonferroni: a right SME fails the
whole check with probability at most ``α``). A negative control is *rejected* when a test
function fails it at that level.

The detection limit for a part of the SME (its noise covariance ``Σ``, its order-2 drift
correction) comes from a control that is the SME with that part scaled
(:class:`~smetool.algorithms.Perturbation`: the noise-free flow is ``Σ × 0``, the order-1 SME is
the correction × 0), run on the same random numbers: the ``O(lr^{p−1})`` coefficient of
``E g(SME) − E g(control)`` is the sensitivity of the tested coefficient to that part, and the
smallest relative error the check fails is ``z · SE(ĉ_{p−1}) / |sensitivity|``
(:func:`~smetool.stats.detection_limit`). The hard controls — ``Σ`` scaled by ``1 ± 2·limit``,
``Σ`` replaced by its diagonal, the drift correction halved — then show that the check fails
wrong SMEs at that size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..algorithms.base import Algorithm, NegativeControl, Perturbation, SMEPart
from ..montecarlo import WeakErrorTable
from ..perturbed import DiagonalNoise, DriftBlend, NoiseScaled, noise_covariance
from ..sde import NoiseKind
from ..stats import SeriesVerdict, detection_limit, judge_series

__all__ = ["judge_table", "DetectionLimits", "detection_limits", "hard_controls"]


def judge_table(table: WeakErrorTable, order: int, alpha: float) -> dict[str, SeriesVerdict]:
    """The series verdict of every test function at the last save time, each at level ``alpha``."""
    out = {}
    for name in table.names:
        steps, errors, stderrs = table.series(name)
        out[name] = judge_series(steps, errors, stderrs, order, alpha=alpha)
    return out


@dataclass(frozen=True)
class DetectionLimits:
    """The smallest relative error in a part of the SME that a check fails, per test function.

    Attributes
    ----------
    part : SMEPart
    control : str
        The negative control it was measured from.
    per_test : dict of str to float
        ``inf`` where the test function does not see the part (its sensitivity is unresolved)
        or has no series model.
    """

    part: SMEPart
    control: str
    per_test: dict[str, float]

    @property
    def best(self) -> float:
        """The check's limit: the smallest over the test functions (``inf`` if none sees it)."""
        return min(self.per_test.values(), default=math.inf)

    @property
    def best_test(self) -> str | None:
        finite = {k: v for k, v in self.per_test.items() if math.isfinite(v)}
        return min(finite, key=finite.__getitem__) if finite else None

    def to_dict(self) -> dict[str, object]:
        return {"part": self.part.value, "control": self.control,
                "per_test": {k: (v if math.isfinite(v) else None) for k, v in self.per_test.items()},
                "best": self.best if math.isfinite(self.best) else None,
                "best_test": self.best_test}


def detection_limits(table: WeakErrorTable, verdicts: Mapping[str, SeriesVerdict],
                     controls: Mapping[str, NegativeControl]) -> dict[SMEPart, DetectionLimits]:
    """The detection limits the controls with a :class:`Perturbation` measure (the first control
    per part), from ``E g(SME) − E g(control)`` at every learning rate (standard error: the two
    sides' in quadrature; the control runs on the SME's random numbers but not on its grid)."""
    out: dict[SMEPart, DetectionLimits] = {}
    for cname, control in controls.items():
        pert = control.perturbation
        if pert is None or pert.part in out or cname not in table.controls:
            continue
        ctable = table.controls[cname]
        per_test = {}
        for k, name in enumerate(table.names):
            diff = (table.reference_means[k, -1] - ctable.reference_means[k, -1]).numpy()
            se = torch.hypot(table.reference_stderrs[k, -1], ctable.reference_stderrs[k, -1])
            per_test[name] = (math.inf if not bool((se > 0).all()) else detection_limit(
                verdicts[name], table.steps, diff, se.numpy(), pert.change))
        out[pert.part] = DetectionLimits(pert.part, cname, per_test)
    return out


def hard_controls(algorithm: Algorithm, lr: float, order: int,
                  limits: Mapping[SMEPart, DetectionLimits]) -> tuple[NegativeControl, ...]:
    """Wrong SMEs just beyond what the check can see, for an order-2 check.

    ``Σ`` scaled by ``1 + 2L`` and ``1 − 2L`` (``L`` the check's detection limit for ``Σ``; the
    second only when ``2L < 1``), ``Σ`` replaced by its diagonal (when ``Σ`` at the initial state
    is not diagonal), and the order-2 drift correction halved (when the plug-in has an order-1
    SME). A decisive check fails every one.
    """
    if order < 2:
        return ()
    sme = algorithm.sme(lr, order)
    out: list[NegativeControl] = []
    noise = limits.get(SMEPart.NOISE_COVARIANCE)
    if noise is not None and math.isfinite(noise.best) and sme.noise_kind is not NoiseKind.SAMPLED:
        for sign in (1.0, -1.0):
            change = sign * 2.0 * noise.best
            if 1.0 + change <= 0.0:
                continue
            out.append(NegativeControl(
                f"Σ × {1 + change:.3f}", NoiseScaled(sme, 1.0 + change), float(order - 1),
                f"the noise covariance {'+' if sign > 0 else '−'}{100 * abs(change):.1f} % (twice "
                f"the detection limit): an O(lr^{order - 1}) error of twice the resolution",
                Perturbation(SMEPart.NOISE_COVARIANCE, change)))
    if sme.noise_kind is not NoiseKind.SAMPLED and _off_diagonal(algorithm, sme):
        out.append(NegativeControl(
            "diagonal Σ", DiagonalNoise(sme), float(order - 1),
            "the noise covariance without its correlations between coordinates"))
    if order == 2 and 1 in algorithm.sme_orders:
        out.append(NegativeControl(
            "half correction", DriftBlend(sme, algorithm.sme(lr, 1), 0.5), 1.0,
            "the order-2 drift correction halved: an O(lr) drift error",
            Perturbation(SMEPart.DRIFT_CORRECTION, -0.5)))
    return tuple(out)


def _off_diagonal(algorithm: Algorithm, sme: object) -> bool:
    """Whether ``Σ`` at the initial state has correlations beyond round-off."""
    x0 = algorithm.initial_state(1, dtype=torch.float64)
    cov = noise_covariance(sme, 0.0, x0)[0]  # type: ignore[arg-type]
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return bool(off.abs().max() > 1e-9 * diag.abs().max().clamp_min(1e-300))


def bonferroni(false_failure: float, tests: Sequence[str]) -> float:
    """The level of each test function's test: ``false_failure / K``."""
    return float(false_failure) / max(1, len(tests))
