"""Exact norm and direction moments of SGD with weight decay on a scale-invariant loss, and of its SME.

SGD with weight decay ``λ``, ``w_{k+1} = (1 − lrλ) w_k − lr ∇L_z(w_k)``, on a scale-invariant loss
(:class:`~smetool.models.scale_invariant.NormalisedQuadratic`: gradient and noise orthogonal to
``w``, of size ``1/‖w‖``) has the order-1 SME, in time ``t = k · lr``,

    dW = −(∇L(W) + λW) dt + √lr Σ(W)^{1/2} dB,      Σ(w) = σ² P_w / ‖w‖².

**The SME's norm is deterministic.** By Itô's formula, since ``∇L ⊥ W`` and the noise is tangent,
``d‖W‖² = (−2λ‖W‖² + lr τ / ‖W‖²) dt`` with ``τ = σ² (d − 1)`` (the noise trace at unit norm), so
``M = ‖W‖⁴`` solves ``dM/dt = −4λM + 2 lr τ``:

    ‖W_t‖⁴ = M∞ + (‖w_0‖⁴ − M∞) e^{−4λt},      M∞ = lr τ / (2λ),

for every scale-invariant loss — the equilibrium ``‖W‖⁴ = η tr Σ / (2λ)`` of Li, Lyu & Arora
(2020, their normalised-SGD analysis, here in the time ``t = k · lr``; derived here, not quoted).

**A state-dependent time scale.** The direction ``Ŵ`` diffuses on the sphere at the rate
``lr σ² / ‖W_t‖⁴`` (the effective learning rate ``lr/‖W‖²`` of Li, Lyu & Arora, times the noise at
that norm): with pure noise (``A = 0``, ``b = 0``) the degree-2 harmonic ``(e·Ŵ)² − 1/d`` decays
as ``exp(−d lr σ² ∫_0^t ds/‖W_s‖⁴)``, and ``∫ ds/M = (4λt + ln(M(t)/M_0)) / (2 lr τ)``, so

    E (e·Ŵ_t)² = 1/d + ((e·ŵ_0)² − 1/d) · (M_0 / M(t))^{d/(2(d−1))} e^{−2dλt/(d−1)}.

**The discrete side, exactly.** With pure noise and the constant-norm ("sphere") tangent noise,
``‖w_{k+1}‖² = (1 − lrλ)² ‖w_k‖² + lr² τ / ‖w_k‖²`` is deterministic, and so is the recursion of
``y_k = E (e·ŵ_k)²``: ``y_{k+1} = [((1−lrλ)² N_k − lr²σ²/N_k) y_k + lr²σ²/N_k] / N_{k+1}``
(``N = ‖w‖²``; the noise is uncorrelated with ``ŵ`` and ``E (e·ξ)² = 1 − (e·ŵ)²``). Hence exact
weak errors of ``‖w‖²`` and ``(e·ŵ)²`` with no Monte Carlo. (All formulas of this module are
derived here.)

References
----------
Z. Li, K. Lyu, S. Arora, "Reconciling modern deep learning with traditional optimization analyses:
the intrinsic learning rate", NeurIPS 2020. Q. Li, C. Tai, W. E, JMLR 20 (2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..checks import check_nonnegative, check_positive, whole_steps

__all__ = ["ScaleInvariantNorms"]


@dataclass(frozen=True)
class ScaleInvariantNorms:
    """Exact ``‖w‖²`` and ``(e·ŵ)²`` moments of SGD with weight decay on a scale-invariant loss.

    Parameters
    ----------
    norm0_sq : float
        ``‖w_0‖² > 0``.
    weight_decay : float
        ``λ ≥ 0``.
    noise_std : float
        ``σ ≥ 0``; the noise trace at unit norm is ``τ = σ² (d − 1)``.
    dim : int
        ``d ≥ 2``.
    cos0_sq : float
        ``(e·ŵ_0)²`` for the direction ``e`` of the test function ``(e·ŵ)²``.

    Examples
    --------
    >>> m = ScaleInvariantNorms(1.0, 1.0, 0.5, 3, 0.5)
    >>> round(m.equilibrium_norm4(0.01), 6)   # lr τ / (2λ) = 0.01 · 0.5 / 2
    0.0025
    """

    norm0_sq: float
    weight_decay: float
    noise_std: float
    dim: int
    cos0_sq: float

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_positive(self.norm0_sq, "norm0_sq", owner)
        check_nonnegative(self.weight_decay, "weight_decay", owner)
        check_nonnegative(self.noise_std, "noise_std", owner)
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 2:
            raise ValueError(f"{owner}: `dim` must be an integer ≥ 2; got {self.dim!r}.")
        if not 0.0 <= self.cos0_sq <= 1.0:
            raise ValueError(f"{owner}: `cos0_sq` must be in [0, 1]; got {self.cos0_sq!r}.")

    @property
    def noise_trace(self) -> float:
        """``τ = σ² (d − 1)``."""
        return self.noise_std**2 * (self.dim - 1)

    def equilibrium_norm4(self, lr: float) -> float:
        """``M∞ = lr τ / (2λ)``, the SME's equilibrium ``‖W‖⁴`` (``inf`` without weight decay)."""
        lr = check_positive(lr, "lr", type(self).__name__)
        if self.weight_decay == 0:
            return float("inf")
        return lr * self.noise_trace / (2.0 * self.weight_decay)

    def sme_norm4(self, lr: float, t: float | np.ndarray) -> np.ndarray:
        """``‖W_t‖⁴ = M_0 e^{−4λt} + 2 lr τ (1 − e^{−4λt}) / (4λ)`` (``2 lr τ t`` when ``λ = 0``)."""
        lr = check_positive(lr, "lr", type(self).__name__)
        t = np.asarray(t, dtype=np.float64)
        lam = self.weight_decay
        grow = 2.0 * t if lam == 0 else -np.expm1(-4.0 * lam * t) / (2.0 * lam)
        return self.norm0_sq**2 * np.exp(-4.0 * lam * t) + lr * self.noise_trace * grow

    def sme_moments(self, lr: float, t: float) -> dict[str, float]:
        """``{"norm_sq": ‖W_t‖², "cos_sq": E (e·Ŵ_t)²}`` of the SME (pure noise for ``cos_sq``)."""
        M = float(self.sme_norm4(lr, t))
        d = self.dim
        log_decay = -(d / (2.0 * (d - 1))) * (4.0 * self.weight_decay * t
                                              + np.log(M / self.norm0_sq**2))
        cos = 1.0 / d + (self.cos0_sq - 1.0 / d) * float(np.exp(log_decay))
        return {"norm_sq": float(np.sqrt(M)), "cos_sq": cos}

    def discrete_moments(self, lr: float, steps: int) -> dict[str, float]:
        """``{"norm_sq": ‖w_k‖², "cos_sq": E (e·ŵ_k)²}`` after ``steps`` steps of SGD with weight
        decay, pure noise of constant norm (both exact; the norm is deterministic)."""
        lr = check_positive(lr, "lr", type(self).__name__)
        a2 = (1.0 - lr * self.weight_decay) ** 2
        s = lr * lr * self.noise_std**2
        N, y = float(self.norm0_sq), float(self.cos0_sq)
        for _ in range(int(steps)):  # a scalar recursion: the exact law, one step at a time
            N_next = a2 * N + s * (self.dim - 1) / N
            y = ((a2 * N - s / N) * y + s / N) / N_next
            N = N_next
        return {"norm_sq": N, "cos_sq": y}

    def weak_errors(self, lrs: Sequence[float], horizon: float) -> dict[str, np.ndarray]:
        """Exact ``E g(w_{T/lr}) − E g(W_T)`` for ``g = ‖w‖²`` and ``(e·ŵ)²``, one per ``lr``.

        Raises
        ------
        ValueError
            A horizon that is not a whole number of steps of some ``lr``.
        """
        owner = type(self).__name__
        horizon = check_positive(horizon, "horizon", owner)
        out: dict[str, list[float]] = {"norm_sq": [], "cos_sq": []}
        for lr in lrs:
            k = whole_steps(horizon, lr, span_name="horizon", step_name="lr", owner=owner)
            disc, sme = self.discrete_moments(lr, k), self.sme_moments(lr, horizon)
            for name in out:
                out[name].append(disc[name] - sme[name])
        return {name: np.asarray(v) for name, v in out.items()}
