"""Hessian–noise alignment: ``α(H, Σ̂) = tr(H Σ̂)/(‖H‖_F ‖Σ̂‖_F)`` of each algorithm's noise at its
end points, against the exact mean and spread of its random-eigenbasis baseline.

Finding ``alignment``: ``α − E α_baseline > 0`` per seed (the noise lives in the Hessian's sharp
directions; Zhang, Zhou & Xu 2021 for dropout, Zhu et al. 2019 for SGD). Control: ``α`` of the
same ``Σ̂`` spectrum in one random eigenbasis per seed.

References
----------
Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022, 2021; Z. Zhu, J. Wu, B. Yu, L. Wu, J. Ma,
ICML 2019.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...bibliography import ZHANG_2021_VARIANCE, ZHU_2019_ANISOTROPIC
from ..alignment import alignment_from_samples, rotated_alignment
from ..figures import figure, per_algorithm
from ..findings import decide_with_control
from ..measure import Measure, Measurement
from ..study import Study

__all__ = ["Alignment", "MEASURE"]


class Alignment(Measure):
    """``α(H, Σ̂)`` with its baseline per noisy algorithm (module docstring)."""

    name = "alignment"
    title = "Hessian–noise alignment α(H, Σ) against its random-eigenbasis baseline"
    order = 30
    references = (ZHANG_2021_VARIANCE, ZHU_2019_ANISOTROPIC)

    def run(self, study: Study) -> Measurement:
        data, findings = {}, {}
        for label in study.others:
            if not study.is_noisy(label):
                continue
            G = study.noise(label)
            summary, hvp = study.hessian(label)
            res = alignment_from_samples(G, hvp, summary.trace, summary.frobenius)
            control = rotated_alignment(G, hvp, summary.frobenius,
                                        study.generator(self.name, label))
            gap = res.alpha - res.baseline_mean
            z = gap / res.baseline_sd
            data[label] = {"alpha": res.alpha, "baseline_mean": res.baseline_mean,
                           "baseline_sd": res.baseline_sd, "control_alpha": control}
            findings[label] = {"alignment": decide_with_control(
                "alignment", "α(H, Σ) is above its random-eigenbasis baseline", gap, +1,
                control - res.baseline_mean,
                detail=f"α {float(res.alpha.mean()):.3f} vs baseline "
                f"{float(res.baseline_mean.mean()):.3f} ± {float(res.baseline_sd.mean()):.3f} "
                f"(min z {float(z.min()):.1f}); α − baseline")}
        return Measurement(self.name, data, findings)

    def columns(self, measurement: Measurement) -> dict[str, dict[str, Any]]:
        return {"α(H, Σ)": {k: v["alpha"] for k, v in measurement.data.items()}}

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        labels = [label for label in study.algorithms if label in measurement.data]
        if not labels:
            return False
        fig, axes = figure(size=(0.9 * len(labels) + 2.4, 3.4))
        data = measurement.data
        per_algorithm(axes[0, 0], labels, {k: v["alpha"] for k, v in data.items()}, "α(H, Σ)",
                      "alignment (dots: seeds; grey: baseline mean, x: control)")
        for i, label in enumerate(labels):
            axes[0, 0].plot([i - 0.3, i + 0.3], [float(data[label]["baseline_mean"].mean())] * 2,
                            color="grey", lw=1)
            axes[0, 0].plot([i] * len(data[label]["control_alpha"]),
                            data[label]["control_alpha"].tolist(), "x", ms=4, color="grey")
        fig.savefig(path, dpi=100)
        return True


MEASURE = Alignment()
