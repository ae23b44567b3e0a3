"""Exact moments of USAM on a quadratic with additive Gaussian gradient noise, and of its SME.

On ``f(x) = ½ (x − x*)ᵀ H (x − x*)`` with the stochastic gradient ``∇f_γ(x) = H (x − x*) + L z``,
``z ~ N(0, I)``, the USAM step (Compagnoni et al. 2023, unnormalised SAM)

    x_{k+1} = x_k − lr ∇f_γ(x_k + ρ ∇f_γ(x_k)) = x_k − lr (I + ρH) (H (x_k − x*) + L z_k)

is affine in ``x`` with an additive random term, so it is an :class:`AffineGradientModel` with
``H(ξ) = C [H | −H x* + L z]``, ``C = I + ρH``: the discrete moments follow an exact linear
recursion and those of the order-1 SME

    dX = −C ∇f(X) dt + √lr C L dW = −∇(f + (ρ/2) ‖∇f‖²)(X) dt + √lr C L dW

an exact linear ODE (``E`` over ``γ`` of the paper's ``(ρ/2) E‖∇f_γ‖²`` differs from
``(ρ/2)‖∇f‖²`` by the constant ``(ρ/2) tr Σ``, so the drifts agree). Hence exact weak errors of
every quadratic test function, for every ``lr`` and ``ρ``: the USAM SME's weak order 1 without
Monte Carlo, and — with ``ρ = 0`` in the SME but not in the algorithm — the ``O(ρ)`` error of the
SGD SME, the negative control that must not converge.

References
----------
E. M. Compagnoni, L. Biggio, A. Orvieto, F. N. Proske, H. Kersting, A. Lucchi, "An SDE for modeling
SAM: theory and insights", ICML 2023 (the USAM SDE, drift ``−∇f̃^USAM``,
``f̃^USAM = f + (ρ/2) E‖∇f_γ‖²``). Q. Li, C. Tai, W. E, JMLR 20 (2019) (weak approximation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import check_nonnegative
from .linear_moments import AffineGradientModel
from .moment_results import Quadratic, as_array

__all__ = ["USAMMoments"]


class USAMMoments(AffineGradientModel):
    """USAM on a quadratic with gradient noise ``L z``: exact moments of USAM and its SME.

    Parameters
    ----------
    hessian : array-like, (d, d)
        ``H``, symmetric.
    minimiser : array-like, (d,)
        ``x*``.
    noise_factor : array-like, (d, d)
        ``L`` (gradient-noise covariance ``Σ = L Lᵀ``).
    rho : float
        ``ρ ≥ 0``, the ascent radius (``ρ = 0`` is SGD).

    Raises
    ------
    ValueError
        Shapes, non-finite entries, a negative ``rho``.

    Examples
    --------
    >>> m = USAMMoments(np.diag([2.0, 0.5]), [0.0, 0.0], 0.3 * np.eye(2), rho=0.5)
    >>> err = m.weak_errors([1.0, -1.0], [2**-7, 2**-8], 1.0)
    >>> 0.95 < float(err.ratios("f", 1)[0]) < 1.05
    True
    """

    sme_orders = (1,)

    def __init__(self, hessian: Any, minimiser: Any, noise_factor: Any, rho: float):
        owner = type(self).__name__
        H = as_array(hessian, "hessian", 2, owner)
        d = H.shape[0]
        if H.shape != (d, d) or not np.allclose(H, H.T, rtol=0.0, atol=1e-12 * np.abs(H).max()):
            raise ValueError(f"{owner}: `hessian` must be a symmetric square matrix; got shape {H.shape}.")
        xs = as_array(minimiser, "minimiser", 1, owner)
        L = as_array(noise_factor, "noise_factor", 2, owner)
        if xs.shape != (d,) or L.shape != (d, d):
            raise ValueError(f"{owner}: `minimiser` must have shape ({d},) and `noise_factor` "
                             f"({d}, {d}); got {xs.shape} and {L.shape}.")
        self.rho = check_nonnegative(rho, "rho", owner)
        self.H, self.minimiser, self.L = H, xs, L
        C = np.eye(d) + self.rho * H
        mean = C @ np.concatenate([H, -(H @ xs)[:, None]], axis=1)
        # The only random entries of H(ξ) are the last column's C L z: E[H_ik H_jl] gains
        # (C Σ C)_ij at k = l = d (row-major index k (d + 1) + l).
        second = np.kron(mean, mean)
        second[:, d * (d + 1) + d] += (C @ L @ L.T @ C).reshape(-1)
        super().__init__(mean, second)

    @property
    def loss(self) -> Quadratic:
        """``f(x) = ½ xᵀHx − (Hx*)ᵀx + ½ x*ᵀHx*``."""
        xs = self.minimiser
        return Quadratic(self.H.copy(), -(self.H @ xs), 0.5 * float(xs @ self.H @ xs))

    def test_functions(self) -> dict[str, Quadratic]:
        """``"f"`` (the objective), ``"norm_sq"`` (``‖x‖²``) and ``"x[i]"`` for every coordinate."""
        d = self.dim
        out = {"f": self.loss, "norm_sq": Quadratic.squared_norm(d)}
        out.update({f"x[{i}]": Quadratic.coordinate(d, i) for i in range(d)})
        return out

    def __repr__(self) -> str:
        return f"USAMMoments(d={self.dim}, rho={self.rho:g})"
