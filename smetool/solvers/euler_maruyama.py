"""The Euler–Maruyama scheme."""

from __future__ import annotations

import math

import torch

from ..bibliography import KLOEDEN_PLATEN_1992
from ..sde import NoiseKind, SampledDriftSDE
from .base import Solver, noise_increment

__all__ = ["EulerMaruyama", "sampled_drift_step"]


class EulerMaruyama(Solver):
    """Euler–Maruyama: ``X_{n+1} = X_n + b(t_n, X_n) h + σ(t_n, X_n) ΔW_n``.

    Strong order 1/2 (1 for additive noise; none for SAMPLED noise, which has no Brownian path),
    weak order 1; every noise kind. With SAMPLED noise the step adds ``√h ζ`` with
    ``ζ = sde.sample_noise(t, x, generator)``, which keeps weak order 1 as long as ``ζ`` has the
    right mean and covariance (Kloeden & Platen, (14.1.2)).

    A :class:`~smetool.sde.SampledDriftSDE` (drift known through unbiased estimates ``b̂`` with
    ``Cov b̂ = γ Cov ζ``) is stepped as ``X + h b̂ + √(h − γh²) ζ``: the same first two moments
    per step, weak order 1 (see that class).

    References
    ----------
    G. Maruyama, "Continuous Markov processes and stochastic equations", Rend. Circ. Mat. Palermo
    4 (1955). P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, §10.2, §14.1.
    """

    name = "euler"
    strong_order = 0.5
    weak_order = 1.0
    noise_kinds = frozenset(NoiseKind)
    # SAMPLED noise has no Brownian path to converge to.
    strong_orders_by_kind = {NoiseKind.ADDITIVE: 1.0, NoiseKind.SAMPLED: None}
    min_matched_moments = 3
    reference = "Kloeden & Platen (1992), Numerical Solution of SDEs, §10.2 and §14.1"
    references = (KLOEDEN_PLATEN_1992,)
    samples_drift = True

    def step(self, sde, t, x, h, dW, generator):
        if isinstance(sde, SampledDriftSDE):
            return sampled_drift_step(sde, t, x, h, generator)
        # The loop's floor is memory traffic: x + h·b in one kernel, then the noise in place.
        if sde.noise_kind in (NoiseKind.DIAGONAL, NoiseKind.SCALAR):
            return torch.add(x, sde.drift(t, x), alpha=h).addcmul_(sde.diffusion(t, x), dW)
        if sde.noise_kind is NoiseKind.GENERAL:  # the SDE may fuse its drift and noise
            return x + sde.euler_increment(t, x, h, dW)
        return torch.add(x, sde.drift(t, x), alpha=h).add_(noise_increment(sde, t, x, dW, h, generator))


def sampled_drift_step(sde: SampledDriftSDE, t: float, x: torch.Tensor, h: float,
                       generator: torch.Generator) -> torch.Tensor:
    """``x + h b̂ + √(h − γ h²) ζ`` for a :class:`~smetool.sde.SampledDriftSDE` (``γ`` its
    :attr:`~smetool.sde.SampledDriftSDE.drift_noise_ratio`).

    Raises
    ------
    ValueError
        ``γ h > 1``: the drift estimate alone carries more covariance than one step may have.
    """
    if generator is None:
        raise ValueError("a SampledDriftSDE needs a `generator`.")
    gamma = float(sde.drift_noise_ratio)
    if gamma * h > 1.0 + 1e-12:
        raise ValueError(
            f"{sde!r}: the step h={h:g} is too large for its sampled drift (covariance γ h² with "
            f"γ={gamma:g} exceeds the step's h Σ); take h ≤ {1.0 / gamma:g} or average more samples.")
    b = sde.sample_drift(t, x, generator)
    zeta = sde.sample_noise(t, x, generator)
    return torch.add(x, b, alpha=h).add_(zeta, alpha=math.sqrt(max(h - gamma * h * h, 0.0)))
