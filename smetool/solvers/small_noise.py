"""A Heun scheme for SDEs with small noise, such as the SMEs of training algorithms."""

from __future__ import annotations

from ..bibliography import KLOEDEN_PLATEN_1992, MILSTEIN_TRETYAKOV_1997
from ..sde import NoiseKind
from .base import Solver, noise_increment
from .platen import additive_step

__all__ = ["SmallNoiseHeun"]


class SmallNoiseHeun(Solver):
    """Heun's drift with an Euler–Maruyama noise term, for ``dX = a dt + √η σ dW`` with small ``η``.

    .. math::

        Ῡ = Y + a(Y) h + ΔN, \\qquad Y_{n+1} = Y + ½(a(Y) + a(Ῡ)) h + ΔN,

    where ``ΔN = σ(Y) ΔW`` (or ``√h ζ`` for SAMPLED noise). For general SDEs this is weak order 1;
    when the noise covariance is ``η σσᵀ`` its weak error is ``O(h² + η h)`` (Milstein & Tretyakov
    1997): every term it drops from the order-2 Itô–Taylor expansion carries a factor of the noise
    covariance. For an SME of a training algorithm with learning rate ``η`` integrated at
    ``h = η / r`` that is ``O(η² (1/r² + 1/r))`` for the cost of two drift and one diffusion
    evaluation per step, against ``4M + 1`` diffusion evaluations for
    :class:`~smetool.solvers.PlatenWeak2`, which is unaffordable for an SME's full noise matrix.

    With ADDITIVE noise the step is Platen's explicit weak order-2 scheme for additive noise
    (Kloeden & Platen (15.1.4), :func:`~smetool.solvers.platen.additive_step`): the same predictor,
    and the noise coefficient taken as ``½(σ(t) + σ(t + h))``, which a time-dependent diffusion
    needs for weak order 2 (with ``σ(t)`` alone the covariance error is first order). It is then
    weak order 2 and strong order 1.

    References
    ----------
    G. N. Milstein, M. V. Tretyakov, "Numerical methods in the weak sense for stochastic
    differential equations with small noise", SIAM J. Numer. Anal. 34(6) (1997), 2142–2167.
    Kloeden & Platen (1992), (15.1.4).
    """

    name = "heun"
    strong_order = 0.5
    weak_order = 1.0
    noise_kinds = frozenset(NoiseKind)
    # SAMPLED noise has no Brownian path to converge to.
    strong_orders_by_kind = {NoiseKind.ADDITIVE: 1.0, NoiseKind.SAMPLED: None}
    weak_orders_by_kind = {NoiseKind.ADDITIVE: 2.0}
    min_matched_moments = 3
    reference = "Milstein & Tretyakov (1997), SIAM J. Numer. Anal. 34(6); Kloeden & Platen (15.1.4)"
    references = (MILSTEIN_TRETYAKOV_1997, KLOEDEN_PLATEN_1992)

    def step(self, sde, t, x, h, dW, generator):
        if sde.noise_kind is NoiseKind.ADDITIVE:
            return additive_step(sde, t, x, h, dW)
        a0 = sde.drift(t, x)
        noise = noise_increment(sde, t, x, dW, h, generator)
        predictor = x + a0 * h + noise
        return x + 0.5 * (a0 + sde.drift(t + h, predictor)) * h + noise
