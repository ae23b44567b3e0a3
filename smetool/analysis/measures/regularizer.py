"""The implicit regularizer each algorithm's SME predicts, measured at the end points.

An algorithm that declares a :class:`~smetool.algorithms.base.Regularizer` ``R_A`` (its SME's drift
is ``−∇(f + R_A)``: dropout's ``R_1``, SGD's ``(lr/4) E‖∇f_γ‖²``, USAM's ``(ρ/2) E‖∇f_γ‖²``,
SAM's ``ρ E‖∇f_γ‖``, GD's ``(lr/4)‖∇f‖²``) descends ``f + R_A``, so the SME predicts that its end
point has a smaller ``R_A`` than gradient descent's from the same initial point (in a comparison
at the same training loss: the same ``f``, less ``R_A``).

Finding ``regularizer``: ``R_A(θ_A) − R_A(θ_GD) < 0`` per seed. Control: the differences with
random signs. An algorithm without a regularizer (SignSGD: its drift is not a gradient) is
reported without a finding.

References
----------
Z. Zhang, Z.-Q. J. Xu, IEEE TPAMI 46(6), 2024; S. L. Smith, B. Dherin, D. G. T. Barrett, S. De,
ICLR 2021; E. M. Compagnoni et al., ICML 2023; D. G. T. Barrett, B. Dherin, ICLR 2021.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...algorithms.capabilities import HasLandscape
from ...bibliography import (
    BARRETT_DHERIN_2021,
    COMPAGNONI_2023_SAM,
    SMITH_2021_ORIGIN,
    ZHANG_XU_2024_IMPLICIT,
)
from ..figures import color, figure
from ..findings import decide_with_control, sign_flipped
from ..measure import Measure, Measurement
from ..study import Study

__all__ = ["ImplicitRegularizer", "MEASURE"]


class ImplicitRegularizer(Measure):
    """``R_A`` at ``A``'s and at GD's end points (module docstring)."""

    name = "regularizer"
    title = "the implicit regularizer each SME predicts, at each algorithm's and at GD's end points"
    order = 50
    references = (ZHANG_XU_2024_IMPLICIT, SMITH_2021_ORIGIN, COMPAGNONI_2023_SAM,
                  BARRETT_DHERIN_2021)

    def run(self, study: Study) -> Measurement:
        data: dict[str, dict] = {}
        findings = {}
        ref = study.reference
        for label in study.others:
            algorithm = study.algorithms[label]
            reg = algorithm.implicit_regularizer(study.trajectories[label].lr) \
                if isinstance(algorithm, HasLandscape) else None
            if reg is None:
                data[label] = {"regularizer": None}
                continue
            own, own_se = reg.value(study.final(label), study.generator(self.name, label))
            gd, gd_se = reg.value(study.final(ref), study.generator(self.name, f"{label}@{ref}"))
            d = own - gd
            data[label] = {"regularizer": reg.name, "formula": reg.formula, "own": own,
                           "own_stderr": own_se, "reference": gd, "reference_stderr": gd_se}
            findings[label] = {"regularizer": decide_with_control(
                "regularizer", f"{label} ends with a smaller {reg.name} (its SME's implicit "
                f"regularizer) than {ref}", d, -1,
                sign_flipped(d, study.generator(self.name, f"{label}/control")),
                detail=f"{reg.name} {float(own.mean()):.4g} at {label}'s end points vs "
                f"{float(gd.mean()):.4g} at {ref}'s (Monte-Carlo SE ≤ "
                f"{float(max(own_se.max(), gd_se.max())):.2g}); per-seed difference")}
        return Measurement(self.name, data, findings)

    def columns(self, measurement: Measurement) -> dict[str, dict[str, Any]]:
        kept = {k: v for k, v in measurement.data.items() if v["regularizer"] is not None}
        return {"R (own end points)": {k: v["own"] for k, v in kept.items()},
                "R (GD's end points)": {k: v["reference"] for k, v in kept.items()}}

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        labels = [k for k, v in measurement.data.items() if v["regularizer"] is not None]
        if not labels:
            return False
        fig, axes = figure(len(labels), size=(2.8, 3.2))
        every = list(study.algorithms)
        for ax, label in zip(axes[0], labels):
            rec = measurement.data[label]
            own, gd = rec["own"].cpu().numpy(), rec["reference"].cpu().numpy()
            for a, b in zip(gd, own):
                ax.plot([0, 1], [a, b], "-o", ms=3, color=color(every, label), alpha=0.6)
            ax.set_xticks([0, 1], [study.reference, label], fontsize=8)
            ax.set_title(f"{rec['regularizer']}: "
                         f"{measurement.findings[label]['regularizer'].verdict}", fontsize=8)
        axes[0, 0].set_ylabel("R at the end points (per seed)", fontsize=8)
        fig.savefig(path, dpi=100)
        return True


MEASURE = ImplicitRegularizer()
