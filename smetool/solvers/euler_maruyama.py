"""The Euler–Maruyama scheme."""

from __future__ import annotations

import torch

from ..bibliography import KLOEDEN_PLATEN_1992
from ..sde import NoiseKind
from .base import Solver, noise_increment

__all__ = ["EulerMaruyama"]


class EulerMaruyama(Solver):
    """Euler–Maruyama: ``X_{n+1} = X_n + b(t_n, X_n) h + σ(t_n, X_n) ΔW_n``.

    Strong order 1/2 (1 for additive noise; none for SAMPLED noise, which has no Brownian path),
    weak order 1; every noise kind. With SAMPLED noise the step adds ``√h ζ`` with
    ``ζ = sde.sample_noise(t, x, generator)``, which keeps weak order 1 as long as ``ζ`` has the
    right mean and covariance (Kloeden & Platen, (14.1.2)).

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

    def step(self, sde, t, x, h, dW, generator):
        # x + h·b in one fused kernel, then the noise in place: the loop's floor is memory traffic.
        return torch.add(x, sde.drift(t, x), alpha=h).add_(noise_increment(sde, t, x, dW, h, generator))
