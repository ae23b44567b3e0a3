"""Exact moments of heavy-ball momentum SGD and of its order-1 SME.

References
----------
Q. Li, C. Tai, W. E, JMLR 20 (2019) — SMEs of momentum SGD.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_positive
from .linear_moments import AffineGradientModel, LinearMomentModel
from .moment_results import Quadratic, kron_embed

__all__ = ["HeavyBallMoments"]


class HeavyBallMoments(LinearMomentModel):
    """Heavy-ball momentum on an :class:`AffineGradientModel`: exact moments and the order-1 SME.

    State ``z = (x, v)``. With step ``ε = lr`` and damping ``λ`` the discrete algorithm is
    ``v_{k+1} = (1 − λε) v_k − ε ∇f_ξ(x_k)``, ``x_{k+1} = x_k + ε v_{k+1}`` — in the usual
    heavy-ball form (``w = ε v``: ``w_{k+1} = μ w_k − η ∇f_ξ(x_k)``, ``x_{k+1} = x_k + w_{k+1}``)
    that is learning rate ``η = ε²`` and momentum ``μ = 1 − λ √η``, the scaling in which the
    SME (Li, Tai & E 2019) has a limit:
    ``dX = V dt``, ``dV = −(λ V + ∇f(X)) dt + √ε Σ(X)^{1/2} dW``, weak order 1 in ``ε``.

    Parameters
    ----------
    base : AffineGradientModel
        The stochastic gradient (e.g. :class:`LeastSquaresSGDMoments`).
    damping : float
        ``λ > 0``.
    """

    sme_orders = (1,)

    def __init__(self, base: AffineGradientModel, damping: float):
        if not isinstance(base, AffineGradientModel):
            raise TypeError(
                f"HeavyBallMoments: `base` must be an AffineGradientModel"
                f"; got {type(base).__name__}.")
        self.base = base
        self.damping = check_positive(damping, "damping", "HeavyBallMoments")
        self.dim = base.dim
        self.state_dim = 2 * base.dim

    def _blocks(self) -> tuple[int, int, np.ndarray]:
        d, N = self.dim, 2 * self.dim + 1
        S = np.zeros((d + 1, N))  # z̃ -> x̃ = (x; 1)
        S[:d, :d] = np.eye(d)
        S[d, -1] = 1.0
        return d, N, S

    def step_operator(self, lr: float) -> np.ndarray:
        d, N, S = self._blocks()
        mu = 1.0 - self.damping * lr
        G0 = np.eye(N)
        G0[:d, d:2 * d] = lr * mu * np.eye(d)
        G0[d:2 * d, d:2 * d] = mu * np.eye(d)
        C = np.zeros((N, d))
        C[:d] = lr * lr * np.eye(d)
        C[d:2 * d] = lr * np.eye(d)
        Pbar = C @ self.base.mean_operator @ S
        return (np.kron(G0, G0) - np.kron(G0, Pbar) - np.kron(Pbar, G0)
                + kron_embed(C, self.base.second_operator, S))

    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        d, N, S = self._blocks()
        drift = np.zeros((N, N))
        drift[:d, d:2 * d] = np.eye(d)
        drift[d:2 * d] = -self.base.mean_operator @ S
        drift[d:2 * d, d:2 * d] -= self.damping * np.eye(d)
        E = np.zeros((N, d))
        E[d:2 * d] = np.eye(d)
        return (np.kron(drift, np.eye(N)) + np.kron(np.eye(N), drift)
                + lr * kron_embed(E, self.base.noise_operator, S))

    def test_functions(self) -> dict[str, Quadratic]:
        """The base's test functions on the ``x`` block, plus ``"v_norm_sq"``."""
        d, s = self.dim, self.state_dim
        out = {}
        for name, g in self.base.test_functions().items():
            Q = np.zeros((s, s))
            Q[:d, :d] = g.Q
            out[name] = Quadratic(Q, np.concatenate([g.q, np.zeros(d)]), g.c)
        out["v_norm_sq"] = Quadratic.squared_norm(s, range(d, s))
        return out

    def __repr__(self) -> str:
        return f"HeavyBallMoments({self.base!r}, damping={self.damping:g})"
