"""The variance principle: is each algorithm's noise larger along sharper directions?

Along the top ``K`` eigendirections ``u_i`` of the training loss's Hessian at the end points
(curvature ``λ_i > 0``), the variance of the algorithm's random gradient data
``v_i = Var(u_iᵀ g)`` is fitted against ``λ_i`` on log–log axes, one slope per seed.

Finding ``variance_principle``: the per-seed slope of ``log v`` on ``log λ`` is ``> 0`` (noise
variance grows with curvature: Zhang, Zhou & Xu 2021 for dropout; Zhu et al. 2019 and Feng & Tu
2021 for SGD). Control: the variances paired with the curvatures of randomly permuted
eigendirections (shuffled eigendirections must lose the relation).

References
----------
Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022, 2021; Z. Zhu, J. Wu, B. Yu, L. Wu, J. Ma,
ICML 2019; Y. Feng, Y. Tu, PNAS 118(9), 2021.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...bibliography import FENG_TU_2021, ZHANG_2021_VARIANCE, ZHU_2019_ANISOTROPIC
from ..figures import color, figure, per_algorithm
from ..findings import decide_with_control, per_seed_slopes, permuted_slopes
from ..measure import Measure, Measurement
from ..study import Study
from ..variance import fit_power_law

__all__ = ["VariancePrinciple", "MEASURE"]


class VariancePrinciple(Measure):
    """Slope of log noise variance on log curvature over the Hessian's top eigendirections."""

    name = "variance_principle"
    title = "variance principle: noise variance against curvature along the Hessian's top " \
            "eigendirections"
    order = 25
    references = (ZHANG_2021_VARIANCE, ZHU_2019_ANISOTROPIC, FENG_TU_2021)

    def run(self, study: Study) -> Measurement:
        data, findings, objects = {}, {}, {}
        K = study.settings.n_eigen
        for label in study.others:
            if not study.is_noisy(label):
                continue
            summary, _ = study.hessian(label)
            lam, U = summary.top[:, :K], summary.vectors[:, :K]
            G = study.noise(label)
            centred = G - G.mean(dim=1, keepdim=True)
            var = torch.einsum("pnd,pkd->pnk", centred, U).pow(2).sum(dim=1) / (G.shape[1] - 1)
            slopes = per_seed_slopes(lam, var)
            ok = (lam > 0) & (var > 0)
            pooled = fit_power_law(lam[ok], var[ok]) if int(ok.sum()) >= 3 else None
            data[label] = {"curvature": lam, "variance": var, "slopes": slopes,
                           "pooled": None if pooled is None else pooled.to_dict()}
            objects[label] = pooled
            text = "no pooled fit" if pooled is None else (
                f"pooled slope {pooled.slope:+.3f} [{pooled.ci_low:+.3f}, {pooled.ci_high:+.3f}] "
                f"over the top {K} eigendirections ({int((lam <= 0).sum())} with λ ≤ 0 left out)")
            findings[label] = {"variance_principle": decide_with_control(
                "variance_principle", f"{label}'s noise variance grows with the curvature of the "
                "Hessian's eigendirections", slopes, +1,
                permuted_slopes(lam, var, study.generator(self.name, label)),
                detail=f"{text}; per-seed slope of log variance on log curvature")}
        return Measurement(self.name, data, findings, objects)

    def columns(self, measurement: Measurement) -> dict[str, dict[str, Any]]:
        return {"variance-principle slope": {k: v["slopes"] for k, v in measurement.data.items()}}

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        labels = list(measurement.data)
        if not labels:
            return False
        every = list(study.algorithms)
        fig, axes = figure(2, size=(max(4.2, 0.9 * len(every) + 2.4), 3.4))
        ax = axes[0, 0]
        for label in labels:
            rec = measurement.data[label]
            lam, var = rec["curvature"], rec["variance"]
            x = torch.log10(lam.clamp_min(1e-300)).numpy()
            y = torch.log10(var.clamp_min(1e-300)).numpy()
            ok = (lam > 0).numpy() & (var > 0).numpy()
            ax.plot(x[ok], y[ok], "o", ms=2.5, alpha=0.5, color=color(every, label), label=label)
        ax.set_xlabel("log10 curvature λ_i", fontsize=8)
        ax.set_ylabel("log10 noise variance along u_i", fontsize=8)
        ax.set_title("noise variance vs curvature (all seeds)", fontsize=9)
        ax.legend(fontsize=7)
        per_algorithm(axes[0, 1], every, {k: v["slopes"] for k, v in measurement.data.items()},
                      "slope of log variance on log λ", "per-seed slopes (> 0: variance principle)")
        axes[0, 1].axhline(0, color="k", lw=0.8)
        fig.savefig(path, dpi=100)
        return True


MEASURE = VariancePrinciple()
