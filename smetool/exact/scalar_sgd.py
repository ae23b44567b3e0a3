"""Exact moments of SGD on a scalar random quadratic with multiplicative noise, of its SMEs, and
of the small-noise Heun scheme on them: every weak error in closed form.

SGD on ``f_γ(x) = ½ (λ + γ) x²`` with ``γ ~ N(0, s²)`` drawn afresh each step is
``x_{k+1} = x_k (a + b ξ_k)``, ``a = 1 − lr λ``, ``b = lr s``, ``ξ ~ N(0, 1)``; its SMEs are
geometric Brownian motions ``dX = μ X dt + √lr s X dW`` with ``μ = −λ`` (order 1) and
``μ = −λ − lr λ²/2`` (order 2, the drift ``−∇(f + lr/4 ‖∇f‖²)``). Both sides are products of
independent factors, so ``E x^m`` is a power of one factor's moment: the discrete side
``x0^m (E (a + bξ)^m)^{T/lr}``, the SME ``x0^m exp(m μ T + ½ m(m − 1) lr s² T)``
(numerics references §2.3), and the small-noise Heun scheme at step ``h``
(:class:`~smetool.solvers.SmallNoiseHeun`) ``Y_{n+1} = Y_n (α + β Z)`` with
``α = 1 + μh + ½ μ²h²`` and ``β = σ √h (1 + ½ μh)``, ``σ² = lr s²``. A quantity whose every
moment is known exactly: the ground truth of the calibration tests of the Monte-Carlo pipeline
(which estimate exactly these expectations, Richardson combination of Heun levels included).

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I", JMLR 20 (2019) — SGD on quadratics with multiplicative noise. Kloeden & Platen
(1992), (4.4.6) — the moments of geometric Brownian motion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..checks import check_positive, whole_steps
from ..stats import richardson_weights

__all__ = ["gaussian_affine_moment", "ScalarQuadraticMoments"]


def gaussian_affine_moment(a: float, b: float, m: int) -> float:
    """``E (a + b Z)^m`` for ``Z ~ N(0, 1)``: ``Σ_{j even} C(m, j) a^{m−j} b^j (j − 1)!!``."""
    return float(sum(math.comb(m, j) * a ** (m - j) * b**j * _double_factorial(j - 1)
                     for j in range(0, m + 1, 2)))


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


class ScalarQuadraticMoments:
    """``E x^m`` of SGD on ``½ (λ + γ) x²``, ``γ ~ N(0, s²)``, of its SMEs and of their Heun
    schemes (module docstring).

    Parameters
    ----------
    curvature : float
        ``λ``.
    noise : float
        ``s ≥ 0``.
    x0 : float
    """

    def __init__(self, curvature: float, noise: float, x0: float):
        self.curvature, self.noise, self.x0 = float(curvature), float(noise), float(x0)

    def drift_rate(self, lr: float, order: int) -> float:
        """``μ`` of the SME of the given order."""
        lam = self.curvature
        return -lam - (0.5 * lr * lam * lam if order == 2 else 0.0)

    def discrete(self, m: int, lr: float, horizon: float) -> float:
        """``E x_{T/lr}^m`` of SGD."""
        n = whole_steps(horizon, lr, span_name="horizon", step_name="lr")
        return self.x0**m * gaussian_affine_moment(1 - lr * self.curvature, lr * self.noise, m) ** n

    def sme(self, m: int, lr: float, horizon: float, order: int) -> float:
        """``E X_T^m`` of the SME of the given order."""
        mu, var = self.drift_rate(lr, order), lr * self.noise**2
        return self.x0**m * math.exp(m * mu * horizon + 0.5 * m * (m - 1) * var * horizon)

    def heun(self, m: int, lr: float, horizon: float, order: int, h: float) -> float:
        """``E Y^m`` of the small-noise Heun scheme at step ``h`` on the SME at the horizon."""
        check_positive(h, "h")
        n = whole_steps(horizon, h, span_name="horizon", step_name="h")
        mu, sigma = self.drift_rate(lr, order), math.sqrt(lr) * self.noise
        alpha = 1 + mu * h + 0.5 * mu * mu * h * h
        beta = sigma * math.sqrt(h) * (1 + 0.5 * mu * h)
        return self.x0**m * gaussian_affine_moment(alpha, beta, m) ** n

    def heun_extrapolated(self, m: int, lr: float, horizon: float, order: int, h: float,
                          levels: int) -> float:
        """``Σ_l w_l E Y^m`` over steps ``h, 2h, …`` (the Richardson weights of a weak order-1
        scheme), the expectation :func:`smetool.verify` estimates for the SME."""
        if levels == 1:
            return self.heun(m, lr, horizon, order, h)
        w = richardson_weights(levels, 1)
        return float(sum(wl * self.heun(m, lr, horizon, order, h * 2**level)
                         for level, wl in enumerate(w)))

    def weak_errors(self, lrs: Sequence[float], horizon: float, order: int,
                    powers: Sequence[int]) -> np.ndarray:
        """``E x^m − E X^m`` (discrete minus exact SME), ``(len(powers), len(lrs))``."""
        return np.array([[self.discrete(m, lr, horizon) - self.sme(m, lr, horizon, order)
                          for lr in lrs] for m in powers])

    def __repr__(self) -> str:
        return (f"ScalarQuadraticMoments(curvature={self.curvature:g}, noise={self.noise:g}, "
                f"x0={self.x0:g})")
