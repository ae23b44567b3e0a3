"""The papers' qualitative findings as checked claims with margins from the seed-to-seed spread.

A paired effect (dropout − GD from the same initializations, or α − baseline) is decided by a
one-sided Student-t bound at 99 % over the seeds: with ``n`` seeds, mean ``d̄`` and standard
error ``SE``, "dropout lowers X" holds when ``d̄ + t_{0.99, n−1} SE < 0`` (a false claim passes
with probability ≤ 1 % under the usual normal model). A power-law relation must, in addition,
have its pooled slope's confidence interval on the claimed side of 0.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.
Z. Zhang, H. Zhou, Z.-Q. J. Xu, "A variance principle explains why dropout finds flatter minima",
arXiv:2111.01022, 2021.
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor

from .alignment import AlignmentResult
from .variance_flatness import VarianceFlatness

__all__ = ["T_CONFIDENCE", "Finding", "paired_bound", "slope_finding", "dropout_findings"]

T_CONFIDENCE = 0.99
"""One-sided level of every paired margin."""


@dataclass(frozen=True)
class Finding:
    """One qualitative claim of the papers, checked with a margin.

    Attributes
    ----------
    name : str
    claim : str
        The claim in words.
    holds : bool
    estimate : float
        The measured effect (sign as in the claim's statistic).
    bound : float
        The one-sided confidence bound compared with 0 (``holds`` requires it on the claimed side).
    detail : str
        How it was measured, with the numbers.
    """

    name: str
    claim: str
    holds: bool
    estimate: float
    bound: float
    detail: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "claim": self.claim,
            "holds": self.holds,
            "estimate": self.estimate,
            "bound": self.bound,
            "detail": self.detail,
        }

    def __repr__(self) -> str:
        mark = "holds" if self.holds else "DOES NOT HOLD"
        return f"Finding({self.name}: {mark}; {self.detail})"



def paired_bound(diff: Tensor, sign: int) -> tuple[float, float, str]:
    """Mean of per-seed values and its one-sided t bound toward 0.

    Parameters
    ----------
    diff : Tensor, (n,)
        Per-seed values (e.g. paired differences).
    sign : {-1, +1}
        The claimed sign: −1 returns the upper bound (claim "< 0"), +1 the lower bound.

    Returns
    -------
    mean, bound : float
    text : str
        The numbers in words, for a report.
    """
    d = diff.detach().double().cpu().numpy()
    n = d.size
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    t = float(stats.t.ppf(T_CONFIDENCE, max(n - 1, 1)))
    bound = mean + t * se if sign < 0 else mean - t * se
    text = f"mean {mean:+.4g}, SE {se:.3g}, {T_CONFIDENCE:.0%} one-sided bound {bound:+.4g}"
    return mean, bound, text


def slope_finding(name: str, vf: VarianceFlatness, which: str, sign: int, claim: str) -> Finding:
    """A power-law relation (variance vs ``which`` flatness) with the claimed slope sign."""
    pooled = vf.pooled_interval if which == "interval" else vf.pooled_hessian
    slopes = vf.slopes(which)
    slopes = slopes[torch.isfinite(slopes)]
    if pooled is None or slopes.numel() < 2:
        return Finding(name, claim, False, float("nan"), float("nan"), "not enough points to fit")
    mean, bound, text = paired_bound(slopes, sign)
    ci_ok = pooled.ci_high < 0 if sign < 0 else pooled.ci_low > 0
    holds = ci_ok and (bound < 0 if sign < 0 else bound > 0)
    left_out = vf.hessian_nonpositive if which == "hessian" else vf.interval_unbounded
    detail = (
        f"pooled slope {pooled.slope:+.3f}, {pooled.confidence:.0%} CI [{pooled.ci_low:+.3f}, "
        f"{pooled.ci_high:+.3f}] (n={pooled.n_points}, {left_out} left out); per-seed slopes {text}"
    )
    return Finding(name, claim, bool(holds), pooled.slope, bound, detail)


def dropout_findings(spectra, vf_grad, vf_traj, final_align: AlignmentResult, orient) -> dict:
    """The findings of :func:`smetool.analysis.report.analyze_dropout`, by name.

    ``flatter`` (Hessian trace), ``variance_interval_gradient``, ``variance_hessian_gradient``,
    ``variance_interval_trajectory``, ``variance_hessian_trajectory``, ``alignment`` (α at the
    end of dropout vs its baseline; also every seed's z-score > 3) and ``condensation``
    (effective orientations).
    """
    out: dict[str, Finding] = {}
    d = spectra["dropout"].trace - spectra["gd"].trace
    mean, bound, text = paired_bound(d, -1)
    out["flatter"] = Finding(
        "flatter", "dropout ends with a smaller Hessian trace than GD (same initializations)",
        bound < 0, mean, bound,
        f"tr H(dropout) − tr H(GD) per seed: {text} "
        f"(tr H dropout {float(spectra['dropout'].trace.mean()):.4g}, GD "
        f"{float(spectra['gd'].trace.mean()):.4g})",
    )
    out["variance_interval_gradient"] = slope_finding(
        "variance_interval_gradient", vf_grad, "interval", -1,
        "gradient-noise variance decreases with interval flatness",
    )
    out["variance_hessian_gradient"] = slope_finding(
        "variance_hessian_gradient", vf_grad, "hessian", +1,
        "gradient-noise variance increases with Hessian flatness",
    )
    out["variance_interval_trajectory"] = slope_finding(
        "variance_interval_trajectory", vf_traj, "interval", -1,
        "trajectory variance decreases with interval flatness",
    )
    out["variance_hessian_trajectory"] = slope_finding(
        "variance_hessian_trajectory", vf_traj, "hessian", +1,
        "trajectory variance increases with Hessian flatness",
    )
    gap = final_align.alpha - final_align.baseline_mean
    mean, bound, text = paired_bound(gap, +1)
    z = final_align.z_score
    holds = bound > 0 and bool((z > 3).all())
    out["alignment"] = Finding(
        "alignment", "α(H, Σ) is well above its random-eigenbasis baseline at the end of dropout",
        holds, mean, bound,
        f"α {float(final_align.alpha.mean()):.3f} vs baseline "
        f"{float(final_align.baseline_mean.mean()):.3f} ± "
        f"{float(final_align.baseline_sd.mean()):.3f}"
        f"; α − baseline per seed: {text}; min z-score {float(z.min()):.1f} (needs > 3)",
    )
    dc = (orient["dropout"].count - orient["gd"].count).double()
    mean, bound, text = paired_bound(dc, -1)
    out["condensation"] = Finding(
        "condensation", "dropout yields fewer effective orientations than GD",
        bound < 0, mean, bound,
        f"orientations dropout {orient['dropout'].count.tolist()}, GD "
        f"{orient['gd'].count.tolist()}, initial {orient['initial'].count.tolist()} "
        f"({orient['dropout'].method}, cos > {orient['dropout'].threshold:g}); "
        f"dropout − GD: {text}",
    )
    return out
