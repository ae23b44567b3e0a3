"""Sharpness at the end points: the trace and the top eigenvalue of the training loss's Hessian,
each algorithm against gradient descent from the same initial points.

Finding ``flatter``: ``tr ∇²f(θ_A) − tr ∇²f(θ_GD) < 0`` per seed (dropout finds flatter minima,
Zhang & Xu, TPAMI 2024; Zhang, Zhou & Xu 2021); ``lower_top_eigenvalue``: the same for
``λ_max`` (the sharpness SAM minimises, Foret et al. 2021). Control: the per-seed differences
with random signs.

References
----------
Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024; Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022,
2021; P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, ICLR 2021.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...bibliography import FORET_2021_SAM, ZHANG_2021_VARIANCE, ZHANG_XU_2024_IMPLICIT
from ..figures import figure, per_algorithm
from ..findings import decide_with_control, sign_flipped
from ..measure import Measure, Measurement
from ..study import Study

__all__ = ["Sharpness", "MEASURE"]


class Sharpness(Measure):
    """Hessian trace and top eigenvalue per algorithm (module docstring)."""

    name = "sharpness"
    title = "sharpness: Hessian trace and top eigenvalue at the end points"
    order = 10
    references = (ZHANG_XU_2024_IMPLICIT, ZHANG_2021_VARIANCE, FORET_2021_SAM)

    def run(self, study: Study) -> Measurement:
        summaries = {label: study.hessian(label)[0] for label in study.algorithms}
        ref = study.reference
        data = {label: s.to_dict() for label, s in summaries.items()}
        findings = {}
        for label in study.others:
            a, g = summaries[label], summaries[ref]
            gen = study.generator(self.name, label)
            d = a.trace - g.trace
            flat = decide_with_control(
                "flatter", f"{label} ends with a smaller Hessian trace than {ref} (same "
                "initializations)", d, -1, sign_flipped(d, gen),
                detail=f"tr H {label} {float(a.trace.mean()):.4g} vs {ref} "
                f"{float(g.trace.mean()):.4g} ({a.method}); per-seed difference")
            t = a.top[:, 0] - g.top[:, 0]
            top = decide_with_control(
                "lower_top_eigenvalue", f"{label} ends with a smaller top Hessian eigenvalue than "
                f"{ref}", t, -1, sign_flipped(t, gen),
                detail=f"λ_max {label} {float(a.top[:, 0].mean()):.4g} vs {ref} "
                f"{float(g.top[:, 0].mean()):.4g}; per-seed difference")
            findings[label] = {"flatter": flat, "lower_top_eigenvalue": top}
        return Measurement(self.name, data, findings)

    def columns(self, measurement: Measurement) -> dict[str, dict[str, Any]]:
        data = measurement.data
        return {"tr H": {k: v["trace"] for k, v in data.items()},
                "λ_max": {k: [row[0] for row in v["top"]] for k, v in data.items()}}

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        labels = list(study.algorithms)
        fig, axes = figure(2, size=(0.9 * len(labels) + 2.4, 3.4))
        data = measurement.data
        per_algorithm(axes[0, 0], labels, {k: v["trace"] for k, v in data.items()},
                      "tr H (training loss)", "Hessian trace at the end points")
        per_algorithm(axes[0, 1], labels, {k: [row[0] for row in v["top"]] for k, v in data.items()},
                      "λ_max", "top Hessian eigenvalue at the end points")
        fig.savefig(path, dpi=100)
        return True


MEASURE = Sharpness()
