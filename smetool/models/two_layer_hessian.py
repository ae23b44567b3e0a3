"""Exact, batched Hessians of the two-layer network's losses, assembled per neuron.

For ``f_θ(x) = Σ_r a_r σ(w_r · x)`` and ``R_S = 1/(2n) Σ_i e_i²`` (``e_i = f_θ(x_i) − y_i``),

``∇²R_S = (1/n) Σ_i ∇f_i ∇f_iᵀ + (1/n) Σ_i e_i ∇²f_i``.

The Gauss–Newton part is ``Jᵀ J / n`` with the Jacobian ``J`` of the outputs. The residual part is
block-diagonal over neurons, because ``f`` is a sum of per-neuron terms ``h_r = a_r σ(w_r · x)``
that each depend on ``(a_r, w_r)`` only:

* ``∂²h_r / ∂a_r² = 0``;
* ``∂²h_r / ∂a_r ∂w_r = σ'(w_r · x) x``;
* ``∂²h_r / ∂w_r ∂w_rᵀ = a_r σ''(w_r · x) x xᵀ``.

The implicit regularizer ``R_1 = v/(2n) Σ_i Σ_r h_ri²`` (``v = (1 − p)/p``) is a sum of
per-neuron functions, so its Hessian is block-diagonal over neurons:

* ``∂²R_1 / ∂a_r² = (v/n) Σ_i σ_ri²``;
* ``∂²R_1 / ∂a_r ∂w_r = (2 v a_r / n) Σ_i σ_ri σ'_ri x_i``;
* ``∂²R_1 / ∂w_r ∂w_rᵀ = (v a_r² / n) Σ_i (σ'_ri² + σ_ri σ''_ri) x_i x_iᵀ``.

Everything is computed in closed form for a batch of parameter vectors ``θ (P, D)`` in the
layout of :class:`smetool.models.two_layer.TwoLayerNet` (``θ = concat(a, W.flatten())``); cost
``O(P n D²)``, no autograd.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024 (``R_1``).
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024 (the loss landscape quantities used with the dropout SME).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .two_layer import NeuronTerms, TwoLayerNet

__all__ = [
    "loss_hessian",
    "implicit_regularizer_hessian",
    "expected_loss_hessian",
    "output_jacobian",
]

def _check_data(net: TwoLayerNet, X: Tensor, y: Tensor | None = None) -> None:
    if X.ndim != 2 or X.shape[1] != net.input_dim:
        raise ValueError(f"`X` must have shape (n, {net.input_dim}); got {tuple(X.shape)}.")
    if y is not None and (y.ndim != 1 or y.shape[0] != X.shape[0]):
        raise ValueError(f"`y` must have shape ({X.shape[0]},); got {tuple(y.shape)}.")


def _check_keep_prob(keep_prob: float) -> float:
    if not 0.0 < float(keep_prob) <= 1.0:
        raise ValueError(f"`keep_prob` must be in (0, 1]; got {keep_prob!r}.")
    return float(keep_prob)


def _neuron_blocks(
    diag_a: Tensor | None, aw: Tensor, ww: Tensor, m: int, d: int
) -> Tensor:
    """Assemble a ``(P, D, D)`` matrix from per-neuron blocks in the ``(a, W)`` layout.

    ``diag_a (P, m)`` (or ``None``), ``aw (P, m, d)`` and ``ww (P, m, d, d)`` are the blocks
    ``∂²/∂a_r²``, ``∂²/∂a_r ∂w_r`` and ``∂²/∂w_r ∂w_rᵀ`` of one neuron; cross-neuron entries are 0.
    """
    P = aw.shape[0]
    eye = torch.eye(m, dtype=aw.dtype, device=aw.device)
    D = m * (d + 1)
    H = aw.new_zeros(P, D, D)
    if diag_a is not None:
        H[:, :m, :m] = torch.diag_embed(diag_a)
    cross = torch.einsum("prd,rs->prsd", aw, eye).reshape(P, m, m * d)
    H[:, :m, m:] = cross
    H[:, m:, :m] = cross.transpose(1, 2)
    H[:, m:, m:] = torch.einsum("prde,rs->prdse", ww, eye).reshape(P, m * d, m * d)
    return H


def output_jacobian(net: TwoLayerNet, terms: NeuronTerms, X: Tensor) -> Tensor:
    """Jacobian of the outputs ``∇_θ f_θ(x_i)``, shape ``(P, n, D)``.

    Parameters
    ----------
    net : TwoLayerNet
    terms : NeuronTerms
        From ``net.terms(theta, X)``.
    X : Tensor, (n, d)

    Returns
    -------
    Tensor, (P, n, D)
        Row ``i`` is ``(σ(w_r · x_i))_r`` followed by ``(a_r σ'(w_r · x_i) x_i)_r`` flattened.
    """
    P, m, n = terms.s.shape
    d = net.input_dim
    ja = terms.s.transpose(1, 2)  # (P, n, m)
    jw = (terms.a.unsqueeze(-1) * terms.ds).unsqueeze(-1) * X.unsqueeze(0).unsqueeze(0)
    jw = jw.permute(0, 2, 1, 3).reshape(P, n, m * d)  # (P, n, m·d), neuron-major like W
    return torch.cat([ja, jw], dim=2)


def loss_hessian(net: TwoLayerNet, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """Exact Hessian of ``R_S(θ) = 1/(2n) Σ_i (f_θ(x_i) − y_i)²``, batched over paths.

    Parameters
    ----------
    net : TwoLayerNet
    theta : Tensor, (P, D)
        Parameter vectors in the layout ``concat(a, W.flatten())``.
    X : Tensor, (n, d)
        Inputs, including the constant bias feature if the network uses one.
    y : Tensor, (n,)
        Targets.

    Returns
    -------
    Tensor, (P, D, D)
        ``∇²R_S(θ)``, exactly symmetric.

    Raises
    ------
    ValueError
        If the shapes of ``theta``, ``X`` or ``y`` do not match the network.

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.

    Examples
    --------
    >>> import torch
    >>> from smetool.models.two_layer import TwoLayerNet
    >>> net = TwoLayerNet(2, 3)
    >>> theta = torch.randn(4, net.n_params, dtype=torch.float64)
    >>> X, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    >>> loss_hessian(net, theta, X, y).shape
    torch.Size([4, 9, 9])
    """
    _check_data(net, X, y)
    terms = net.terms(theta, X)
    n = X.shape[0]
    m, d = net.width, net.input_dim
    J = output_jacobian(net, terms, X)
    gauss_newton = torch.einsum("pni,pnj->pij", J, J) / n
    e = terms.h.sum(dim=1) - y  # (P, n)
    d2 = net.activation.d2(terms.z)  # (P, m, n)
    aw = torch.einsum("pn,prn,nd->prd", e, terms.ds, X) / n
    ww = torch.einsum("pn,prn,nd,ne->prde", e, d2, X, X) * (terms.a / n)[..., None, None]
    H = gauss_newton + _neuron_blocks(None, aw, ww, m, d)
    return 0.5 * (H + H.transpose(1, 2))  # exactly symmetric (the einsums round differently)


def implicit_regularizer_hessian(
    net: TwoLayerNet, theta: Tensor, X: Tensor, keep_prob: float
) -> Tensor:
    """Exact Hessian of the dropout implicit regularizer ``R_1``, batched over paths.

    ``R_1(θ) = (1 − p)/(2 n p) Σ_i Σ_r a_r² σ(w_r · x_i)²`` with ``p`` the **keep** probability
    (each neuron's output is multiplied by ``b_r / p``, ``b_r ~ Bernoulli(p)``).

    Parameters
    ----------
    net : TwoLayerNet
    theta : Tensor, (P, D)
    X : Tensor, (n, d)
    keep_prob : float
        ``p`` in ``(0, 1]``.

    Returns
    -------
    Tensor, (P, D, D)
        ``∇²R_1(θ)``; block-diagonal over neurons (in the ``(a_r, w_r)`` ordering).

    Raises
    ------
    ValueError
        If ``keep_prob`` is outside ``(0, 1]`` or shapes do not match.

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024, where
    ``R_1`` is derived as the first implicit regularizer of dropout.
    """
    p = _check_keep_prob(keep_prob)
    _check_data(net, X)
    v = (1.0 - p) / p
    terms = net.terms(theta, X)
    n = X.shape[0]
    m, d = net.width, net.input_dim
    s, ds, a = terms.s, terms.ds, terms.a
    d2 = net.activation.d2(terms.z)
    diag_a = (v / n) * (s * s).sum(dim=2)
    aw = (2.0 * v / n) * a.unsqueeze(-1) * torch.einsum("prn,nd->prd", s * ds, X)
    ww = torch.einsum("prn,nd,ne->prde", ds * ds + s * d2, X, X)
    ww = ww * (v / n * a * a)[..., None, None]
    H = _neuron_blocks(diag_a, aw, ww, m, d)
    return 0.5 * (H + H.transpose(1, 2))


def expected_loss_hessian(
    net: TwoLayerNet, theta: Tensor, X: Tensor, y: Tensor, keep_prob: float
) -> Tensor:
    """Exact Hessian of the expected dropout loss ``L_S = R_S + R_1``, batched over paths.

    Parameters
    ----------
    net : TwoLayerNet
    theta : Tensor, (P, D)
    X : Tensor, (n, d)
    y : Tensor, (n,)
    keep_prob : float
        ``p`` in ``(0, 1]``.

    Returns
    -------
    Tensor, (P, D, D)

    Raises
    ------
    ValueError
        If ``keep_prob`` is outside ``(0, 1]`` or shapes do not match.

    References
    ----------
    Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.
    """
    return loss_hessian(net, theta, X, y) + implicit_regularizer_hessian(net, theta, X, keep_prob)
