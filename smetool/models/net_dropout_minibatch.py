"""Exact moments of dropout SGD on a network with last-layer dropout and the squared loss: one
mask per step, shared by a mini-batch of ``B`` examples.

A step's gradient is the mean over the batch of per-example dropout gradients ``a_i(η)`` (the
dropout gradient on the data set ``{x_i}``), with one mask ``η`` for the batch. By the law of total
covariance (the :class:`~smetool.algorithms.derive_batch.BatchMean` identity),

``E = ∇L_S`` (the full-batch expected loss) and
``Σ = c_B [mean_i Cov_η a_i + Cov_i ∇L_i] + (1 − c_B) Cov_η ā``,

``ā = mean_i a_i`` the full-batch dropout gradient, ``L_i`` the expected dropout loss on
``{x_i}``, ``c_B = 1/B`` for examples drawn with replacement and ``(n − B)/(B (n − 1))`` for
distinct ones. Each term is a closed form of :class:`~smetool.models.LastLayerDropout`'s kind:
``Cov_η a_i = F_i F_iᵀ`` with ``F_i = ∂Φ_i/∂θ`` for the per-example polynomial ``Φ_i``, and
``Φ_all = mean_i Φ_i``. So ``Σ = F Fᵀ`` with ``F = ∂Ψ/∂θ`` for

``Ψ = [√(c_B/n) Φ_i]_{i ≤ n} ⊕ [√(c_B/n) (L_i − mean_j L_j)]_{i ≤ n} ⊕ √(1 − c_B) Φ_all``,

``M = n m(m+1)/2 + n + m(m+1)/2`` columns; ``F z`` is one vector–Jacobian product of ``Ψ``.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024 (full-batch dropout SME). Q. Li, C. Tai, W. E,
JMLR 20 (2019) (mini-batch SGD and its SME).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_batch_size
from .net_dropout_exact import JacobianNoiseFactor, LastLayerDropout

__all__ = ["MiniBatchLastLayerDropout"]


class MiniBatchLastLayerDropout(JacobianNoiseFactor):
    """The exact mean and noise factor of last-layer dropout SGD on mini-batches (see the module).

    Parameters
    ----------
    exact : LastLayerDropout
        The full-batch closed forms of the network.
    batch_size : int
        ``B`` in ``[1, n]``.
    replacement : bool
        Examples drawn with replacement (default) or distinct.
    """

    def __init__(self, exact: LastLayerDropout, batch_size: int, *, replacement: bool = True):
        if not isinstance(exact, LastLayerDropout):
            raise TypeError(f"`exact` must be a LastLayerDropout; got {type(exact).__name__}.")
        self.exact = exact
        self.model = exact.model
        n = self.model.n_points
        self.batch_size = check_batch_size(batch_size, n)
        B = self.batch_size
        self.c = 1.0 / B if replacement else ((n - B) / (B * (n - 1)) if n > 1 else 0.0)
        self.replacement = bool(replacement)

    @property
    def noise_dim(self) -> int:
        """``M = n m(m+1)/2 + n + m(m+1)/2``."""
        n, M = self.model.n_points, self.exact.noise_dim
        return n * M + n + M

    def _psi_one(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """``Ψ(θ) (M,)`` of one path, with ``F = ∂Ψ/∂θ``."""
        ex = self.exact
        phi, W, e = ex._terms(theta, X, y)  # (n, m), (C, m), (n, C)
        n, p, v = X.shape[0], ex.keep_prob, ex.v
        c = (1.0 - 2.0 * p) / p
        WtW = W.T @ W
        a = phi * (e @ W)  # (n, m): a_ri = φ_ri e_i·W_{:r}, the example's own (n = 1) terms
        cm = phi.unsqueeze(2) * phi.unsqueeze(1) * WtW  # (n, m, m)
        ri, qi = torch.triu_indices(ex.width, ex.width, offset=1, device=theta.device)
        singles = math.sqrt(v) * (a + 0.5 * c * torch.diagonal(cm, dim1=1, dim2=2))
        per = torch.cat([singles, v * cm[:, ri, qi]], dim=1)  # (n, M): Φ_i
        losses = 0.5 * (e * e).sum(dim=1) + 0.5 * v * (phi * phi * torch.diagonal(WtW)).sum(dim=1)
        scale = math.sqrt(self.c / n)
        return torch.cat([scale * per.reshape(-1), scale * (losses - losses.mean()),
                          math.sqrt(1.0 - self.c) * per.mean(dim=0)])

    def expected_loss_grad(self, theta: Tensor) -> Tensor:
        """``E ∇R_batch^drop = ∇L_S`` (full batch), ``(P, D)``."""
        return self.exact.expected_loss_grad(theta)

    def expected_loss_hvp(self, theta: Tensor, vec: Tensor) -> Tensor:
        """``∇²L_S u``, ``(P, D)``."""
        return self.exact.expected_loss_hvp(theta, vec)

    def _noise_feature(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """``ψ(θ)``: the dropout, mini-batch and interaction features (see the module)."""
        return self._psi_one(theta, X, y)
