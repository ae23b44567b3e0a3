"""Findings: a claim about a per-seed statistic, its three-way verdict and its negative control.

A finding is a signed claim about a per-seed statistic ``x_s`` (a paired difference, a fitted
slope, an alignment gap): the claimed sign ``σ ∈ {−1, +1}`` says which side of 0 the papers put
it. Over ``n ≥ 2`` seeds, the two-sided Student-t interval at level :data:`CONFIDENCE` (98 %, so
each side is a one-sided 99 % bound) is

``x̄ ± t_{0.99, n−1} · s / √n``

and the verdict is

* **holds** — the interval excludes 0 on the claimed side;
* **fails** — it excludes 0 on the other side (the data contradict the claim's direction);
* **inconclusive** — it contains 0; the margin says by how much it misses either side.

Under the null (``E x = 0``, normal spread) a false "holds" has probability ≤ 1 %. Every finding
carries a **negative control** (:attr:`Finding.control`): the same statistic computed where the
effect has been destroyed on purpose — values paired with a random permutation of the directions
(:func:`permuted_slopes`), per-seed differences with random signs (:func:`sign_flipped`), the
noise covariance in a random eigenbasis — whose verdict must not be "holds".

This is the one verdict type of the analyses (:class:`Finding`); the verdicts of weak-order
checks are :class:`smetool.stats.Verdict`, a different question (an order, not a sign).

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024; Y. Feng, Y. Tu, PNAS 118(9), 2021 (the relations checked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..checks import check_confidence
from ..jsonutil import json_safe
from .variance import fit_power_law

__all__ = ["CONFIDENCE", "VERDICTS", "Finding", "decide", "decide_with_control",
           "permuted_slopes", "sign_flipped", "per_seed_slopes"]

CONFIDENCE = 0.98
"""Two-sided level of the seed-to-seed interval (each side 99 %)."""

VERDICTS = ("holds", "fails", "inconclusive")


@dataclass(frozen=True)
class Finding:
    """One claim's verdict from its own per-seed numbers, with its negative control.

    Attributes
    ----------
    name : str
    claim : str
        The claim in words.
    sign : int
        ``+1`` (the statistic is claimed > 0) or ``−1`` (claimed < 0).
    verdict : {"holds", "fails", "inconclusive"}
    mean : float
        Mean of the per-seed statistic.
    low, high : float
        Its two-sided t-interval at ``confidence`` over the seeds (NaN with fewer than 2 values).
    margin : float
        ``σ · (bound nearest the claimed side)``: > 0 by how much the interval clears 0 in the
        claimed direction; < 0 by how much it falls short.
    n_seeds : int
    confidence : float
    detail : str
        How it was measured, with the numbers.
    values : tuple of float
        The per-seed statistic the verdict was decided on (non-finite entries included).
    control : Finding or None
        The negative control (the same statistic with the effect destroyed).
    """

    name: str
    claim: str
    sign: int
    verdict: str
    mean: float
    low: float
    high: float
    margin: float
    n_seeds: int
    confidence: float
    detail: str
    values: tuple = ()
    control: Finding | None = None

    @property
    def holds(self) -> bool:
        """Whether the verdict is "holds"."""
        return self.verdict == "holds"

    def to_dict(self) -> dict:
        """Strict-JSON record (NaN as ``null``)."""
        return json_safe({
            "name": self.name, "claim": self.claim, "sign": self.sign, "verdict": self.verdict,
            "mean": self.mean, "interval": [self.low, self.high], "margin": self.margin,
            "n_seeds": self.n_seeds, "confidence": self.confidence, "detail": self.detail,
            "values": list(self.values),
            "control": None if self.control is None else self.control.to_dict()})

    def line(self) -> str:
        """One line: verdict, claim, numbers and the control's verdict."""
        ctrl = "" if self.control is None else f" (control: {self.control.verdict})"
        return f"[{self.verdict:>12}] {self.claim}: {self.detail}{ctrl}"

    def __repr__(self) -> str:
        return (f"Finding({self.name}: {self.verdict}; mean {self.mean:+.3g}, "
                f"{self.confidence:.0%} interval [{self.low:+.3g}, {self.high:+.3g}], "
                f"n={self.n_seeds})")


def _as_float64(values) -> np.ndarray:
    # a list goes straight to float64 (torch.as_tensor would round it to float32 first)
    if isinstance(values, Tensor):
        return values.detach().cpu().double().numpy().ravel()
    return np.asarray([np.nan if v is None else v for v in np.ravel(values)], dtype=float)


def decide(name: str, claim: str, values, sign: int, *, detail: str = "",
           confidence: float = CONFIDENCE) -> Finding:
    """The verdict on per-seed ``values`` for the claim "``sign · E x > 0``".

    Parameters
    ----------
    name, claim : str
    values : array-like, (n,)
        One statistic per seed; non-finite entries (``None`` included: a seed whose fit had too
        few points) are dropped and counted in the detail.
    sign : {-1, +1}
    detail : str
        Prepended to the numbers in :attr:`Finding.detail`.
    confidence : float
        Two-sided level in ``(0, 1)``.

    Returns
    -------
    Finding
        Without a control; "inconclusive" with NaN bounds when fewer than 2 finite values remain.

    Raises
    ------
    ValueError
        ``sign`` not ±1 or ``confidence`` outside ``(0, 1)``.
    """
    if sign not in (-1, 1):
        raise ValueError(f"`sign` must be -1 or +1; got {sign!r}.")
    confidence = check_confidence(confidence)
    x = _as_float64(values)
    kept = tuple(float(v) for v in x)
    dropped = int((~np.isfinite(x)).sum())
    x = x[np.isfinite(x)]
    n = x.size
    if n < 2:
        nan = float("nan")
        text = f"{detail}; " if detail else ""
        return Finding(name, claim, int(sign), "inconclusive", float(x.mean()) if n else nan, nan,
                       nan, nan, n, confidence, f"{text}fewer than 2 seeds with a finite value",
                       kept)
    mean = float(x.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    low, high = mean - half, mean + half
    near, far = (low, high) if sign > 0 else (-high, -low)  # the interval of σ·x
    verdict = "holds" if near > 0 else ("fails" if far < 0 else "inconclusive")
    margin = near if verdict != "fails" else far
    text = (f"mean {mean:+.4g}, {confidence:.0%} t-interval over {n} seeds "
            f"[{low:+.4g}, {high:+.4g}]" + (f" ({dropped} seeds without a value)" if dropped else ""))
    return Finding(name, claim, int(sign), verdict, mean, low, high, float(margin), n, confidence,
                   f"{detail}; {text}" if detail else text, kept)


def decide_with_control(name: str, claim: str, values, sign: int, control_values, *,
                        detail: str = "", control_detail: str = "") -> Finding:
    """:func:`decide` on ``values`` with the negative control decided on ``control_values``
    (same sign, claim prefixed "negative control of: ")."""
    control = decide(name, f"negative control of: {claim}", control_values, sign,
                     detail=control_detail)
    return replace(decide(name, claim, values, sign, detail=detail), control=control)


def per_seed_slopes(x: Tensor, y: Tensor) -> Tensor:
    """Log–log slope of ``y`` against ``x`` per seed, ``(P,)``: NaN where fewer than 3 positive,
    finite pairs remain or all ``x`` are equal.

    Parameters
    ----------
    x, y : Tensor, (P, K)
    """
    out = []
    for xp, yp in zip(x, y):
        ok = torch.isfinite(xp) & (xp > 0) & torch.isfinite(yp) & (yp > 0)
        if int(ok.sum()) < 3 or bool((xp[ok] == xp[ok][0]).all()):
            out.append(float("nan"))
        else:
            out.append(fit_power_law(xp[ok], yp[ok]).slope)
    return torch.tensor(out, dtype=torch.float64)


def permuted_slopes(x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
    """Negative control of a power-law relation: per-seed slopes after pairing each direction's
    ``y`` with the ``x`` of a randomly permuted direction of the same seed.

    The permutation keeps both marginal distributions and destroys the pairing, so the slope's
    expectation is 0 (exchangeability): a verdict of "holds" on it would be a false finding.

    Parameters
    ----------
    x, y : Tensor, (P, K)
        E.g. flatness (or curvature) and variance per seed and direction.
    generator : torch.Generator
    """
    perm = torch.argsort(torch.rand(x.shape, generator=generator, dtype=torch.float64), dim=1)
    return per_seed_slopes(torch.gather(x.cpu(), 1, perm), y.cpu())


def sign_flipped(values: Tensor, generator: torch.Generator) -> Tensor:
    """Negative control of a paired difference: each seed's value with a random sign.

    Under the flips the values are symmetric about 0 whatever the effect, with the same spread,
    so the claim "< 0" (or "> 0") is false by construction.
    """
    signs = torch.randint(0, 2, values.shape, generator=generator).to(torch.float64) * 2 - 1
    return values.detach().cpu().to(torch.float64) * signs
