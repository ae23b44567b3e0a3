"""The hot kernels of the dropout SME: network terms, the mean gradient, ``F z``, the Euler step and
the Hessian–vector product, each a few large batched operations (see
:mod:`smetool.models.dropout_problem` for the notation).

Every vector of the closed forms is a set of blocks ``(1/n) Σ_i g_si u_si`` for a weight array
``u (P, m, n)`` (:func:`blocks`: two contractions over the data, never the ``(P, m, n, d + 1)``
array ``g``). The weights of the matrix-free noise ``F z`` are one batched product:

``u_si = √v z_s e_i + Σ_q N_sq h_qi``,
``N = v Z + √v 1 z_{1:m}ᵀ + √v c diag(z_{1:m})``,

with ``Z`` the symmetric, zero-diagonal matrix of the pair entries of ``z`` (:func:`pair_matrix`
builds ``N`` with one gather). The drift's weights ``e_i + v h_si`` enter the same way, so one
Euler–Maruyama increment ``b h + √lr F ΔW`` is **one** contraction (:func:`weighted_blocks` with
``coef = √lr √v z_{1:m} − h`` and ``N − h v I``), where the drift and the noise separately need
two. The functions are :class:`~smetool.kernels.Kernel` objects: eager by default, compiled with
:func:`torch.compile` inside :func:`~smetool.kernels.compiled_kernels`; they take no generator.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..kernels import kernel
from .two_layer import Activation

__all__ = ["network_terms", "blocks", "mean_gradient", "weighted_blocks", "pair_index",
           "pair_matrix", "loss_hvp"]


@kernel
def network_terms(a: Tensor, W: Tensor, X: Tensor, y: Tensor, activation: Activation
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``z, σ(z), σ'(z), h = a σ(z)`` ``(P, m, n)`` and the residuals ``e = Σ_r h_r − y`` ``(P, n)``
    of output weights ``a (P, m)`` and input weights ``W (P, m, d)`` on ``X (n, d)``."""
    P, m, d = W.shape
    # One (P·m, d) @ (d, n) product: W is a strided view of θ, which matmul would otherwise
    # broadcast into P small products.
    z = torch.matmul(W.reshape(P * m, d), X.transpose(0, 1)).view(P, m, -1)
    s = activation.fn(z)
    ds = activation.d1(z) if activation.d1_from_value is None else activation.d1_from_value(z, s)
    h = a.unsqueeze(-1) * s
    return z, s, ds, h, h.sum(dim=-2) - y


def blocks(s: Tensor, ds: Tensor, a: Tensor, X: Tensor, u: Tensor) -> Tensor:
    """``(1/n) Σ_i g_si u_si`` for weights ``u (..., P, m, n)`` in the parameter layout
    ``(a, W.flatten())``: ``(..., P, D)``.

    ``g_si = (σ(z_si), a_s σ'(z_si) x_i)``: the ``a``-block is ``Σ_i σ_si u_si / n`` and the
    ``w``-block ``a_s Σ_i σ'_si u_si x_i / n``.
    """
    n = X.shape[0]
    first = (s * u).sum(dim=-1)
    rest = torch.matmul(ds * u, X) * a.unsqueeze(-1)
    return torch.cat([first, rest.flatten(-2)], dim=-1) / n


@kernel
def mean_gradient(s: Tensor, ds: Tensor, h: Tensor, e: Tensor, a: Tensor, X: Tensor,
                  v: float) -> Tensor:
    """``∇L_S`` ``(P, D)``: blocks of the weights ``e_i + v h_si``."""
    return blocks(s, ds, a, X, torch.add(e.unsqueeze(-2), h, alpha=v))


@kernel
def weighted_blocks(s: Tensor, ds: Tensor, h: Tensor, e: Tensor, a: Tensor, X: Tensor,
                    coef: Tensor, N: Tensor) -> Tensor:
    """Blocks of the weights ``u_si = coef_s e_i + Σ_q N_sq h_qi`` (``coef (P, m)``,
    ``N (P, m, m)``): ``F z``, or an Euler–Maruyama increment, ``(P, D)``."""
    u = torch.bmm(N, h).addcmul_(coef.unsqueeze(-1), e.unsqueeze(-2))
    return blocks(s, ds, a, X, u)


def pair_index(m: int, device: torch.device | str | None = None) -> Tensor:
    """Indices ``(m·m,)`` into ``[diagonal (m), pairs (m(m−1)/2)]`` that lay a vector out as the
    symmetric matrix ``[s, q]``: entry ``s`` on the diagonal, the pair column of ``(min, max)``
    off it (pairs ``r < q`` in row-major order, :func:`torch.triu_indices`)."""
    ri, qi = torch.triu_indices(m, m, offset=1, device=device)
    idx = torch.arange(m, device=device).repeat_interleave(m).reshape(m, m).clone()
    pair = m + torch.arange(ri.numel(), device=device)
    idx[ri, qi] = pair
    idx[qi, ri] = pair
    return idx.flatten()


def pair_matrix(diag: Tensor, pairs: Tensor, column: Tensor, index: Tensor) -> Tensor:
    """``N_sq = [s = q] diag_s + [s ≠ q] pairs_(s,q) + column_q``, ``(P, m, m)``, one gather and
    one broadcast add (``diag``, ``column`` ``(P, m)``; ``pairs`` ``(P, m(m−1)/2)``; ``index``
    from :func:`pair_index`)."""
    P, m = diag.shape
    ext = torch.cat([diag, pairs], dim=1)
    N = torch.gather(ext, 1, index.expand(P, -1)).view(P, m, m)
    return N.add_(column.unsqueeze(-2))


@kernel
def loss_hvp(z: Tensor, s: Tensor, ds: Tensor, h: Tensor, e: Tensor, a: Tensor, X: Tensor,
             a_dot: Tensor, W_dot: Tensor, v: float, activation: Activation) -> Tensor:
    """``∇²L_S u`` ``(P, D)`` for ``u = (ȧ, Ẇ)``.

    With ``ż = Ẇ x``, ``ḣ = ȧ σ + a σ' ż``, ``ė = Σ_r ḣ_r``, the weights ``w = e + v h`` and
    ``q = ė + v ḣ``, block ``s`` is ``(1/n) Σ_i [ġ_si w_i + g_si q_si]`` with
    ``ġ_si = (σ' ż, ȧ σ' x + a σ'' ż x)``, i.e. the ``a``-block ``Σ_i (σ q + σ' ż w) / n`` and
    the ``w``-block ``Σ_i (σ' (a q + ȧ w) + a σ'' ż w) x_i / n``: one reduction and one product
    with the data.
    """
    n = X.shape[0]
    P, m, d = W_dot.shape
    z_dot = torch.matmul(W_dot.reshape(P * m, d), X.transpose(0, 1)).view(P, m, n)
    a_, a_dot_ = a.unsqueeze(-1), a_dot.unsqueeze(-1)
    ds_z = ds * z_dot
    h_dot = torch.addcmul(a_dot_ * s, a_, ds_z)
    q = torch.add(h_dot.sum(dim=-2, keepdim=True), h_dot, alpha=v)
    w = torch.add(e.unsqueeze(-2), h, alpha=v)
    grad_a = torch.addcmul(ds_z * w, s, q).sum(dim=-1)
    d2 = (activation.d2(z) if activation.d2_from_value is None
          else activation.d2_from_value(z, s, ds))
    weights = torch.addcmul(ds * torch.addcmul(a_ * q, a_dot_, w), a_ * d2, z_dot * w)
    grad_W = torch.matmul(weights, X)
    return torch.cat([grad_a, grad_W.flatten(-2)], dim=-1) / n
