"""Mini-batch SGD on a two-layer network and its SMEs (orders 1 and 2), in closed form.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..checks import check_batch_size
from ..models.two_layer import TwoLayerNet, add_bias_feature
from .sgd import SGDSME, FiniteSumSGD, check_tensor

__all__ = ["SGDTwoLayer"]


class SGDTwoLayer(FiniteSumSGD):
    """Mini-batch SGD on a two-layer network, ``f_i(θ) = ½ (f_θ(x_i) − y_i)²``.

    Per-sample gradients ``∇f_i = e_i ∇_θ f_θ(x_i)`` come from the network's closed-form neuron
    terms, batched over paths and data points (``O(P n m d)``, no autograd); the Hessian–vector
    product of the order-2 drift is closed form too:
    ``∇²f v = (1/n) Σ_i [(∇f_θ(x_i)·v) ∇f_θ(x_i) + e_i ∇²f_θ(x_i) v]`` (it needs ``σ''``).

    Parameters
    ----------
    net : TwoLayerNet
    X : Tensor, (n, d)
        Inputs, bias feature included if wanted (:func:`~smetool.models.add_bias_feature`).
    y : Tensor, (n,)
    theta0 : Tensor, (D,)
    batch_size : int
        ``B`` in ``[1, n]``.

    Raises
    ------
    TypeError
        If ``net`` is not a :class:`TwoLayerNet`.
    ValueError
        Wrong shapes, non-finite values, ``batch_size`` outside ``[1, n]``.

    References
    ----------
    Li, Tai & E, JMLR 20 (2019).
    """

    def __init__(self, net: TwoLayerNet, X: Any, y: Any, theta0: Any, *, batch_size: int = 1):
        owner = type(self).__name__
        if not isinstance(net, TwoLayerNet):
            raise TypeError(f"{owner}: `net` must be a TwoLayerNet; got {type(net).__name__}.")
        X = check_tensor(X, "X", 2, owner)
        y = check_tensor(y, "y", 1, owner, X.dtype).to(X)
        theta0 = check_tensor(theta0, "theta0", 1, owner, X.dtype).to(X)
        n = X.shape[0]
        if X.shape[1] != net.input_dim:
            raise ValueError(f"{owner}: `X` must have shape (n, {net.input_dim}); got {tuple(X.shape)}.")
        if y.shape != (n,):
            raise ValueError(f"{owner}: `y` must have shape ({n},); got {tuple(y.shape)}.")
        if theta0.shape != (net.n_params,):
            raise ValueError(
                f"{owner}: `theta0` must have shape ({net.n_params},)"
                f"; got {tuple(theta0.shape)}.")
        self.batch_size = check_batch_size(batch_size, n, owner)
        self.net, self.X, self.y, self.x0 = net, X, y, theta0
        self.n_points = n

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float64, *, width: int = 4, n_points: int = 8,
                batch_size: int = 1, seed: int = 0) -> SGDTwoLayer:
        """A small default task: ``n`` points on ``[−1, 1]`` with a bias feature, target
        ``½ sin(πx)``, a tanh network of ``width`` neurons, ``a ~ N(0, 0.25)``, ``W ~ N(0, 1)``
        drawn from ``torch.Generator().manual_seed(seed)``."""
        # Made in float64 and rounded once, so every dtype has the same task (to its rounding).
        x = torch.linspace(-1.0, 1.0, n_points, dtype=torch.float64).unsqueeze(1)
        X = add_bias_feature(x).to(dtype)
        y = (0.5 * torch.sin(math.pi * x[:, 0])).to(dtype)
        net = TwoLayerNet(2, width, "tanh")
        gen = torch.Generator().manual_seed(seed)
        theta0 = net.init_params(a_std=0.5, w_std=1.0, generator=gen, dtype=dtype)
        return cls(net, X, y, theta0, batch_size=batch_size)

    def _terms(self, x: Tensor):
        return self.net.terms(x, self.X.to(x))

    def loss(self, x: Tensor) -> Tensor:
        return self.net.loss(x, self.X.to(x), self.y.to(x))

    def gradient(self, x: Tensor) -> Tensor:
        return self.net.loss_grad(x, self.X.to(x), self.y.to(x))[1]

    def per_sample_gradients(self, x: Tensor) -> Tensor:
        t = self._terms(x)
        X = self.X.to(x)
        e = t.h.sum(dim=1) - self.y.to(x)  # (P, n)
        grad_a = (t.s * e.unsqueeze(1)).transpose(1, 2)  # (P, n, m)
        coef = t.a.unsqueeze(-1) * t.ds * e.unsqueeze(1)  # (P, m, n)
        grad_W = torch.einsum("pmn,nd->pnmd", coef, X)
        return torch.cat([grad_a, grad_W.flatten(2)], dim=2)

    def batch_gradient(self, x: Tensor, index: Tensor) -> Tensor:
        # Evaluate the network on each path's own mini-batch only: O(P B m d).
        a, W = self.net.split(x)
        Xb, yb = self.X.to(x)[index], self.y.to(x)[index]  # (P, B, d), (P, B)
        z = torch.einsum("pmd,pbd->pmb", W, Xb)
        s, ds = self.net.activation.fn(z), self.net.activation.d1(z)
        e = torch.einsum("pm,pmb->pb", a, s) - yb
        B = index.shape[1]
        grad_a = torch.einsum("pmb,pb->pm", s, e) / B
        grad_W = torch.einsum("pmb,pbd->pmd", ds * e.unsqueeze(1), Xb) * a.unsqueeze(-1) / B
        return self.net.join(grad_a, grad_W)

    def hessian_vector_product(self, x: Tensor, v: Tensor) -> Tensor:
        if v.shape != x.shape:
            raise ValueError(
                f"SGDTwoLayer: `v` must have the shape of `x`, {tuple(x.shape)}"
                f"; got {tuple(v.shape)}.")
        t = self._terms(x)
        X, n = self.X.to(x), self.n_points
        a_dot, W_dot = self.net.split(v)
        z_dot = torch.einsum("pmd,nd->pmn", W_dot, X)
        e = t.h.sum(dim=1) - self.y.to(x)
        # Gauss–Newton part: f_dot_i = ∇f_θ(x_i)·v.
        f_dot = (a_dot.unsqueeze(-1) * t.s + t.a.unsqueeze(-1) * t.ds * z_dot).sum(dim=1)
        # Curvature part e_i ∇²f_θ(x_i) v: neuron r's block is (σ' ż, (ȧ σ' + a σ'' ż) x_i).
        d2 = self.net.activation.d2(t.z)
        ga = (t.s * f_dot.unsqueeze(1) + t.ds * z_dot * e.unsqueeze(1)).sum(dim=-1) / n
        coef = (t.a.unsqueeze(-1) * t.ds * f_dot.unsqueeze(1)
                + (a_dot.unsqueeze(-1) * t.ds + t.a.unsqueeze(-1) * d2 * z_dot) * e.unsqueeze(1))
        gW = torch.einsum("pmn,nd->pmd", coef, X) / n
        return self.net.join(ga, gW)

    def sme(self, lr: float, order: int = 1) -> SGDSME:
        """The SME of ``order``; warns for a non-smooth activation."""
        sde = SGDSME(self, lr, order)
        self.net.warn_if_not_smooth("the SGD SME")
        return sde

    def __repr__(self) -> str:
        return f"SGDTwoLayer({self.net!r}, n={self.n_points}, batch_size={self.batch_size})"
