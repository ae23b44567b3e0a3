"""Variance–flatness relations: the variance of each algorithm's noise (random gradient data) and
of its iterates (random trajectory data, windows of further steps) along their principal
directions, against the interval flatness and the Hessian flatness there.

Findings ``variance_interval_{data}`` (per-seed slope of log variance on log interval flatness
``< 0``, the inverse variance–flatness relation) and ``variance_hessian_{data}`` (on log ``uᵀHu``,
``> 0``), for ``data`` = ``gradient`` and ``trajectory@T`` (raw and ``-detrended``) per window
``T``; each window also gets the growth exponents of its variance (0 stationary, 1 diffusion,
2 drift). Control: the flatness values permuted among the directions of each seed.

References
----------
Y. Feng, Y. Tu, PNAS 118(9), 2021; Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ...bibliography import FENG_TU_2021, ZHANG_2024_DROPOUT
from ..figures import color, figure, log_scatter
from ..findings import Finding, decide_with_control, permuted_slopes
from ..measure import Measure, Measurement
from ..study import Study
from ..trajectory_windows import detrend, variance_growth
from ..variance_flatness import VarianceFlatness, variance_flatness_from_samples

__all__ = ["FlatnessRelations", "MEASURE"]


def _detail(vf: VarianceFlatness, which: str) -> str:
    pooled = vf.pooled_interval if which == "interval" else vf.pooled_hessian
    left = vf.interval_unbounded if which == "interval" else vf.hessian_nonpositive
    if pooled is None:
        return "no pooled fit"
    return (f"pooled slope {pooled.slope:+.3f} [{pooled.ci_low:+.3f}, {pooled.ci_high:+.3f}] "
            f"({pooled.n_points} points, {left} left out)")


class FlatnessRelations(Measure):
    """The variance–flatness relations per noisy algorithm (module docstring)."""

    name = "variance_flatness"
    title = "variance along the principal directions against flatness"
    studies = frozenset({"analyze"})
    order = 20
    references = (FENG_TU_2021, ZHANG_2024_DROPOUT)

    def _data(self, study: Study, label: str) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Samples ``(P, N, D)`` and centre per kind of data (``None``: the sample mean)."""
        out: dict[str, tuple[Tensor, Tensor | None]] = {
            "gradient": (study.noise(label), study.final(label))}
        window = study.windows.get(label)
        for T in study.settings.windows if window is not None else ():
            assert window is not None
            for flat in (False, True) if study.settings.detrended else (False,):
                part = detrend(window[-T:]) if flat else window[-T:]
                out[f"trajectory@{T}" + ("-detrended" if flat else "")] = (
                    part.transpose(0, 1), None)
        return out

    def run(self, study: Study) -> Measurement:
        data: dict[str, dict] = {}
        objects: dict[str, dict[str, VarianceFlatness]] = {}
        findings: dict[str, dict[str, Finding]] = {}
        landscape, s = study.landscape, study.settings
        for label in study.others:
            if not study.is_noisy(label):
                continue
            gen = study.generator(self.name, label)
            rec, found, kept = {}, {}, {}
            for key, (samples, center) in self._data(study, label).items():
                K = min(s.n_components, samples.shape[1] - 1, samples.shape[2])
                vf = variance_flatness_from_samples(samples, center, landscape.loss,
                                                    landscape.hvp, n_components=K, level=s.level)
                rec[key], kept[key] = vf.to_dict(), vf
                extra = ""
                if center is None:
                    growth = variance_growth(samples.transpose(0, 1), vf.components.directions)
                    rec[key]["growth"] = growth
                    extra = (f"; growth exponent β of PC1 {float(growth[:, 0].median()):.2f}, "
                             f"median over PCs {float(growth.median()):.2f}")
                T, _, tag = key[11:].partition("-")
                kind = "gradient-noise" if key == "gradient" else \
                    f"trajectory ({T}-step window{', detrended' if tag else ''})"
                var = vf.components.variances
                found[f"variance_interval_{key}"] = decide_with_control(
                    f"variance_interval_{key}", f"{kind} variance decreases with interval flatness",
                    vf.slopes("interval"), -1, permuted_slopes(vf.interval, var, gen),
                    detail=_detail(vf, "interval") + extra)
                found[f"variance_hessian_{key}"] = decide_with_control(
                    f"variance_hessian_{key}", f"{kind} variance increases with Hessian flatness",
                    vf.slopes("hessian"), +1, permuted_slopes(vf.hessian, var, gen),
                    detail=_detail(vf, "hessian") + extra)
            data[label], findings[label], objects[label] = rec, found, kept
        return Measurement(self.name, data, findings, objects)

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        labels = list(measurement.objects)
        if not labels:
            return False
        kinds = list(measurement.objects[labels[0]])
        fig, axes = figure(len(kinds), 2, size=(3.6, 3.0))
        every = list(study.algorithms)
        for label in labels:
            for col, kind in enumerate(kinds):
                vf = measurement.objects[label][kind]
                var = vf.components.variances
                for row, (which, x, fit, name) in enumerate((
                        ("interval", vf.interval, vf.pooled_interval, f"interval flatness ({vf.level:g}·f)"),
                        ("hessian", vf.hessian, vf.pooled_hessian, "Hessian flatness uᵀHu"))):
                    ax = axes[row, col]
                    log_scatter(ax, x, var, fit, label, color(every, label))
                    verdict = measurement.findings[label][f"variance_{which}_{kind}"].verdict
                    ax.set_xlabel(f"log10 {name}", fontsize=7)
                    ax.set_ylabel("log10 variance along PC", fontsize=7)
                    ax.set_title(f"{kind}: {verdict}", fontsize=8)
        axes[0, 0].legend(fontsize=7)
        fig.savefig(path, dpi=100)
        return True


MEASURE = FlatnessRelations()
