"""SVAG's coefficients and the exact moments of SVAG on linear problems.

References
----------
Z. Li, S. Malladi, S. Arora, "On the validity of modeling SGD with stochastic differential
equations (SDEs)", NeurIPS 2021.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import check_positive
from .linear_moments import AffineGradientModel, LinearMomentModel
from .moment_results import Quadratic

__all__ = ["svag_coefficients", "svag_amplification", "SVAGMoments"]


def svag_coefficients(amplification: float) -> tuple[float, float]:
    """``(c₊, c₋) = ((1 + √(2l − 1))/2, (1 − √(2l − 1))/2)`` for amplification ``l ≥ 1``.

    ``c₊ + c₋ = 1`` and ``c₊² + c₋² = l``: combining two independent stochastic gradients with
    these weights keeps their mean and multiplies their covariance by ``l``.

    Raises
    ------
    ValueError
        If ``amplification`` is not a finite number ≥ 1.
    """
    if isinstance(amplification, bool) or not isinstance(amplification, (int, float)) \
            or not math.isfinite(amplification) or amplification < 1:
        raise ValueError(f"`amplification` must be a finite number ≥ 1; got {amplification!r}.")
    s = math.sqrt(2.0 * amplification - 1.0)
    return 0.5 * (1.0 + s), 0.5 * (1.0 - s)


def svag_amplification(base_lr: float, lr: float, owner: str) -> float:
    """``l = base_lr / lr`` for a SVAG step ``lr``, which must be positive and at most ``base_lr``.

    Raises
    ------
    ValueError
        If ``lr`` is not positive or exceeds ``base_lr`` (``l < 1``); the message starts with
        ``owner``.
    """
    lr = check_positive(lr, "lr", owner)
    if lr > base_lr * (1 + 1e-12):
        raise ValueError(
            f"{owner}: the step `lr` must be at most `base_lr` = {base_lr:g} (amplification "
            f"l = base_lr / lr ≥ 1); got lr={lr:g}."
        )
    return max(1.0, base_lr / lr)


class SVAGMoments(LinearMomentModel):
    """SVAG on an :class:`AffineGradientModel`: exact moments, against the base's order-1 SME.

    One SVAG step of size ``τ`` uses ``H_l = c₊ H(ξ₁) + c₋ H(ξ₂)`` (independent draws,
    ``c₊ + c₋ = 1``, ``c₊² + c₋² = l = η / τ``), so ``E H_l = H̄`` and
    ``E[H_l ⊗ H_l] = H̄ ⊗ H̄ + l (E[H ⊗ H] − H̄ ⊗ H̄)``: the base's step recursion with the noise
    operator amplified by ``l``. The SME it approaches is the base's order-1 SME at learning rate
    ``η`` for every ``τ``; the weak error is ``O(τ) = O(η / l)`` (Li, Malladi & Arora 2021).

    Parameters
    ----------
    base : AffineGradientModel
        E.g. :class:`LeastSquaresSGDMoments` or :class:`LinearDropoutMoments`.
    base_lr : float
        ``η``; the SVAG steps ``τ`` passed as ``lr`` must satisfy ``τ ≤ η``.

    References
    ----------
    Z. Li, S. Malladi, S. Arora, "On the validity of modeling SGD with stochastic differential
    equations (SDEs)", NeurIPS 2021.
    """

    sme_orders = (1,)

    def __init__(self, base: AffineGradientModel, base_lr: float):
        if not isinstance(base, AffineGradientModel):
            raise TypeError(f"SVAGMoments: `base` must be an AffineGradientModel; got {type(base).__name__}.")
        self.base = base
        self.base_lr = check_positive(base_lr, "base_lr", "SVAGMoments")
        self.dim = base.dim
        self.state_dim = base.dim

    def amplification(self, lr: float) -> float:
        """``l = η / τ`` for the step ``τ = lr`` (``ValueError`` if ``l < 1``)."""
        return svag_amplification(self.base_lr, lr, self._owner)

    def step_operator(self, lr: float) -> np.ndarray:
        base = self.base
        amplified = np.kron(base.mean_operator, base.mean_operator) \
            + self.amplification(lr) * base.noise_operator
        return base.step_operator(lr, amplified)

    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        self.amplification(lr)
        return self.base.sme_generator(self.base_lr, 1)

    def test_functions(self) -> dict[str, Quadratic]:
        """The base's test functions."""
        return self.base.test_functions()

    def __repr__(self) -> str:
        return f"SVAGMoments({self.base!r}, base_lr={self.base_lr:g})"
