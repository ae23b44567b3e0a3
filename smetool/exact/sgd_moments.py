"""Exact moments of SGD on least squares and of dropout GD on a linear model, with their SMEs.

References
----------
Q. Li, C. Tai, W. E, JMLR 20 (2019) — the SMEs of SGD. Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu,
"Stochastic modified equations and dynamics of dropout algorithm", ICLR 2024 — the dropout SME.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_batch_size, check_keep_prob
from .linear_moments import AffineGradientModel
from .moment_results import Quadratic, as_array

__all__ = ["LeastSquaresSGDMoments", "LinearDropoutMoments"]


class LeastSquaresSGDMoments(AffineGradientModel):
    """Mini-batch SGD on finite-sum least squares: exact moments of SGD and of its SMEs.

    ``f(x) = (1/n) Σ_i f_i(x)``, ``f_i(x) = ½ (a_iᵀx − y_i)²``; one step averages ``B`` sample
    gradients drawn uniformly *with replacement*. With ``G_i = [I − lr a_i a_iᵀ, lr y_i a_i]`` and
    ``Ḡ = (1/n) Σ G_i``: ``E x_{k+1} = Ḡ E x̃_k`` and
    ``vec E x_{k+1}x_{k+1}ᵀ = [Ḡ⊗Ḡ + (1/B)((1/n) Σ G_i⊗G_i − Ḡ⊗Ḡ)] vec E x̃_k x̃_kᵀ``.
    The SME's ``E Σ(X)`` is the formula of the project's numerics notes (§2.4), here assembled as
    ``(1/B) [(1/n) Σ H_i ⊗ H_i − H̄ ⊗ H̄] vec M̃`` with ``H_i = [a_i a_iᵀ, −y_i a_i]``.

    Parameters
    ----------
    A : array-like, (n, d)
        Rows ``a_i``.
    y : array-like, (n,)
    batch_size : int
        ``B`` in ``[1, n]``.

    Raises
    ------
    ValueError
        Shapes, non-finite data, ``batch_size`` outside ``[1, n]``.

    Examples
    --------
    >>> import numpy as np
    >>> m = LeastSquaresSGDMoments(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), np.ones(3))
    >>> err = m.weak_errors([1.0, -1.0], [2**-6, 2**-7], 1.0)
    >>> float(err.ratios("f", 2)[0]) > 1.8
    True
    """

    def __init__(self, A: Any, y: Any, batch_size: int = 1):
        owner = type(self).__name__
        A = as_array(A, "A", 2, owner)
        y = as_array(y, "y", 1, owner)
        n, d = A.shape
        if y.shape != (n,):
            raise ValueError(f"{owner}: `y` must have shape ({n},) to match `A` {A.shape}; got {y.shape}.")
        self.A, self.y, self.batch_size = A, y, check_batch_size(batch_size, n, owner)
        H = np.concatenate([np.einsum("ni,nj->nij", A, A), -(y[:, None] * A)[:, :, None]], axis=2)
        Hbar = H.mean(axis=0)
        per_sample = np.einsum("nik,njl->ijkl", H, H).reshape(d * d, (d + 1) ** 2) / n
        B = self.batch_size
        second = per_sample / B + (1.0 - 1.0 / B) * np.kron(Hbar, Hbar)
        super().__init__(Hbar, second)

    @property
    def loss(self) -> Quadratic:
        """``f(x) = ½ xᵀAx − bᵀx + (1/2n) Σ y_i²``."""
        return Quadratic(self.hessian.copy(), -self.gradient_offset, 0.5 * float(np.mean(self.y**2)))

    def test_functions(self) -> dict[str, Quadratic]:
        """``"f"`` (the loss), ``"norm_sq"`` (``‖x‖²``) and ``"x[i]"`` for every coordinate."""
        d = self.dim
        out = {"f": self.loss, "norm_sq": Quadratic.squared_norm(d)}
        out.update({f"x[{i}]": Quadratic.coordinate(d, i) for i in range(d)})
        return out

    def __repr__(self) -> str:
        n, d = self.A.shape
        return f"LeastSquaresSGDMoments(n={n}, d={d}, batch_size={self.batch_size})"


def mask_moment_exponents(d: int) -> np.ndarray:
    """``#distinct − #factors`` of ``E[μ_ik μ_jl]`` for the dropout gradient's monomials.

    ``H(u)_ik = u_i S_ik u_k`` (``k < d``) or ``−u_i b_i`` (``k = d``), so each entry is one
    monomial in the independent multipliers ``u_r = b_r/p`` with ``E u_r^m = p^{1−m}`` (m ≥ 1):
    ``E Π_j u_{r_j} = p^{#distinct − #factors}``.
    """
    i, k, j, q = np.meshgrid(np.arange(d), np.arange(d + 1), np.arange(d), np.arange(d + 1),
                             indexing="ij")
    k = np.where(k < d, k, -1)  # the bias column carries a single factor u_i
    q = np.where(q < d, q, -1)
    present = 2 + (k >= 0) + (q >= 0)
    distinct = (1 + ((k >= 0) & (k != i)) + ((j != i) & (j != k))
                + ((q >= 0) & (q != i) & (q != k) & (q != j)))
    return (distinct - present).transpose(0, 2, 1, 3)  # -> [i, j, k, l]


class LinearDropoutMoments(AffineGradientModel):
    """Full-batch dropout GD on a linear model: exact moments of the iterates and of the SMEs.

    Model ``f_θ(x) = Σ_r θ_r x_r``; each input coordinate ``r`` is a "neuron" kept with
    probability ``p`` (**keep** probability) and scaled by ``1/p``: with ``u_r = b_r/p = 1 + η_r``
    the dropout loss is ``R_S^drop(θ; η) = (1/2n) Σ_i (Σ_r u_r θ_r x_ir − y_i)²`` and its gradient
    is ``H(u) θ̃ = D_u (S D_u θ − b)`` with ``S = XᵀX/n``, ``b = Xᵀy/n``. The expected loss is
    ``L_S(θ) = R_S(θ) + (v/2) Σ_r S_rr θ_r²``, ``v = (1−p)/p`` (the implicit regulariser), and
    ``Σ(θ) = Cov_u[H(u) θ̃]`` is quadratic in ``θ``. Mask moments are exact:
    ``E Π_j u_{r_j} = p^{#distinct − #factors}``.

    Parameters
    ----------
    X : array-like, (n, d)
    y : array-like, (n,)
    keep_prob : float
        ``p`` in ``(0, 1]``.

    References
    ----------
    Zhang, Li, Luo & Xu, ICLR 2024 (the dropout SME); Li, Tai & E, JMLR 2019 (order 2).
    """

    def __init__(self, X: Any, y: Any, keep_prob: float):
        owner = type(self).__name__
        X = as_array(X, "X", 2, owner)
        y = as_array(y, "y", 1, owner)
        n, d = X.shape
        if y.shape != (n,):
            raise ValueError(f"{owner}: `y` must have shape ({n},) to match `X` {X.shape}; got {y.shape}.")
        self.X, self.y, self.keep_prob = X, y, check_keep_prob(keep_prob, owner=owner)
        S = X.T @ X / n
        b = X.T @ y / n
        coef = np.concatenate([S, -b[:, None]], axis=1)  # (d, d+1)
        weight = self.keep_prob ** mask_moment_exponents(d)  # [i, j, k, l]
        second = np.einsum("ik,jl,ijkl->ijkl", coef, coef, weight).reshape(d * d, (d + 1) ** 2)
        mean_w = np.ones((d, d + 1))
        mean_w[np.arange(d), np.arange(d)] = 1.0 / self.keep_prob  # E u_r² = 1/p
        super().__init__(coef * mean_w, second)
        self._S, self._b = S, b

    @property
    def v(self) -> float:
        """``E η² = (1 − p)/p``."""
        return (1.0 - self.keep_prob) / self.keep_prob

    @property
    def training_loss(self) -> Quadratic:
        """``R_S(θ) = (1/2n) Σ_i (x_iᵀθ − y_i)²``."""
        return Quadratic(self._S.copy(), -self._b, 0.5 * float(np.mean(self.y**2)))

    @property
    def expected_loss(self) -> Quadratic:
        """``L_S(θ) = E_η R_S^drop(θ; η)``."""
        return Quadratic(self.hessian.copy(), -self._b, 0.5 * float(np.mean(self.y**2)))

    def test_functions(self) -> dict[str, Quadratic]:
        """``"R_S"``, ``"L_S"``, ``"norm_sq"`` and ``"theta[i]"`` for every coordinate."""
        d = self.dim
        out = {"R_S": self.training_loss, "L_S": self.expected_loss,
               "norm_sq": Quadratic.squared_norm(d)}
        out.update({f"theta[{i}]": Quadratic.coordinate(d, i) for i in range(d)})
        return out

    def step(self, theta: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One dropout GD step on a batch ``θ (P, d)``, a fresh mask per path (for Monte Carlo)."""
        # np.array: a writable copy (the stored data are read-only).
        X = torch.as_tensor(np.array(self.X), dtype=theta.dtype, device=theta.device)
        y = torch.as_tensor(np.array(self.y), dtype=theta.dtype, device=theta.device)
        keep = torch.rand(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
        u = (keep < self.keep_prob).to(theta.dtype) / self.keep_prob
        resid = (theta * u) @ X.T - y  # (P, n)
        return theta - lr * u * (resid @ X) / X.shape[0]

    def __repr__(self) -> str:
        n, d = self.X.shape
        return f"LinearDropoutMoments(n={n}, d={d}, keep_prob={self.keep_prob:g})"
