"""Update rules ``A(θ, ξ)`` on the two-layer network, for
:func:`~smetool.algorithms.derive.derive_sme`: dropout with mini-batches and DropConnect.

Each is the increment per unit learning rate of one step, ``θ_{k+1} = θ_k + lr A(θ_k, ξ_k)``,
``A = −∇_θ`` of the step's random loss, in closed form (no autograd), batched over rows: ``θ``
``(N, D)`` and ``ξ`` with ``N`` rows. Plain torch, so :func:`torch.func.jvp` differentiates it.
Picklable objects (not closures), so that chunks can run in other processes.

References
----------
N. Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
JMLR 15 (2014). L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of neural
networks using DropConnect", ICML 2013.
"""

from __future__ import annotations

from torch import Tensor

from .two_layer import TwoLayerNet

__all__ = ["DropoutMiniBatchUpdate", "DropConnectUpdate"]


class _OnData:
    def __init__(self, net: TwoLayerNet, X: Tensor, y: Tensor):
        if X.ndim != 2 or X.shape[1] != net.input_dim or y.shape != (X.shape[0],):
            raise ValueError(f"`X` must be (n, {net.input_dim}) and `y` (n,); got "
                             f"{tuple(X.shape)} and {tuple(y.shape)}.")
        self.net, self.X, self.y = net, X, y

    def _data(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return (self.X.to(dtype=theta.dtype, device=theta.device),
                self.y.to(dtype=theta.dtype, device=theta.device))


def _activations(net: TwoLayerNet, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``σ(z), σ'(z), σ''(z)``."""
    act = net.activation
    s = act.fn(z)
    ds = act.d1(z) if act.d1_from_value is None else act.d1_from_value(z, s)
    d2 = act.d2(z) if act.d2_from_value is None else act.d2_from_value(z, s, ds)
    return s, ds, d2


class DropoutMiniBatchUpdate(_OnData):
    """Dropout on the hidden neurons with a mini-batch: ``ξ = (mask, batch)``,

    ``A(θ; mask, batch) = −∇_θ (1/2B) Σ_{j ≤ B} (Σ_r mask_r a_r σ(w_r·x_{i_j}) − y_{i_j})²``,

    one mask (multipliers ``b/p``, ``(N, m)``) shared by the batch's examples (indices ``(N, B)``),
    as in dropout SGD on a mini-batch. With the whole data set as the batch it is full-batch dropout
    GD (:class:`~smetool.models.DropoutProblem`).

    Parameters
    ----------
    net : TwoLayerNet
    X : Tensor, (n, d)
        Inputs, bias feature included.
    y : Tensor, (n,)
    """

    def __call__(self, theta: Tensor, xi: tuple[Tensor, Tensor]) -> Tensor:
        mask, index = xi
        X, y = self._data(theta)
        a, W = self.net.split(theta)
        Xb, yb = X[index], y[index]  # (N, B, d), (N, B)
        act = self.net.activation
        z = W @ Xb.transpose(1, 2)  # (N, m, B)
        s = act.fn(z)
        ds = act.d1(z) if act.d1_from_value is None else act.d1_from_value(z, s)
        am = a * mask
        e = (am.unsqueeze(-1) * s).sum(dim=1) - yb  # (N, B)
        eb = (e / index.shape[1]).unsqueeze(1)  # (N, 1, B)
        grad_a = mask * (s * eb).sum(dim=-1)
        grad_W = ((ds * eb) @ Xb) * am.unsqueeze(-1)
        return -self.net.join(grad_a, grad_W)

    def directional(self, theta: Tensor, xi: tuple[Tensor, Tensor], u: Tensor) -> Tensor:
        """``∇_θ A(θ; mask, batch) u`` in closed form (it needs ``σ''``), ``(N, D)``.

        With ``ż = Ẇ x``, ``ṡ = σ' ż`` and ``ė_b = Σ_r (ȧ_r mask_r σ_rb + a_r mask_r ṡ_rb)``, the
        ``a``-block is ``mask_r (1/B) Σ_b (ṡ_rb e_b + σ_rb ė_b)`` and the ``w``-block
        ``(1/B) Σ_b (ȧ_r mask_r σ' e_b + a_r mask_r (σ'' ż e_b + σ' ė_b)) x_b`` (negated).
        """
        mask, index = xi
        X, y = self._data(theta)
        a, W = self.net.split(theta)
        a_dot, W_dot = self.net.split(u)
        Xb, yb = X[index], y[index]
        z = W @ Xb.transpose(1, 2)
        z_dot = W_dot @ Xb.transpose(1, 2)
        s, ds, d2 = _activations(self.net, z)
        am, am_dot = a * mask, a_dot * mask
        e = (am.unsqueeze(-1) * s).sum(dim=1) - yb
        s_dot = ds * z_dot
        e_dot = (am_dot.unsqueeze(-1) * s + am.unsqueeze(-1) * s_dot).sum(dim=1)
        B = index.shape[1]
        eb, eb_dot = (e / B).unsqueeze(1), (e_dot / B).unsqueeze(1)
        grad_a = mask * (s_dot * eb + s * eb_dot).sum(dim=-1)
        weights = (am_dot.unsqueeze(-1) * ds * eb
                   + am.unsqueeze(-1) * (d2 * z_dot * eb + ds * eb_dot))
        return -self.net.join(grad_a, weights @ Xb)


class DropConnectUpdate(_OnData):
    """DropConnect on the input weights, full batch: ``ξ`` the multipliers ``M (N, m, d)`` of
    ``W`` (entries ``b/p``, the bias weights included),

    ``A(θ; M) = −∇_θ (1/2n) Σ_i (Σ_r a_r σ((M_r ⊙ w_r)·x_i) − y_i)²``.

    (DropConnect on the output weights ``a`` of a two-layer network is dropout on its hidden
    neurons: a mask on ``W`` is the case dropout does not cover.)

    Parameters
    ----------
    net : TwoLayerNet
    X : Tensor, (n, d)
    y : Tensor, (n,)

    References
    ----------
    L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of neural networks using
    DropConnect", ICML 2013.
    """

    def __call__(self, theta: Tensor, mask: Tensor) -> Tensor:
        X, y = self._data(theta)
        a, W = self.net.split(theta)
        act = self.net.activation
        z = (W * mask) @ X.T  # (N, m, n)
        s = act.fn(z)
        ds = act.d1(z) if act.d1_from_value is None else act.d1_from_value(z, s)
        e = (a.unsqueeze(-1) * s).sum(dim=1) - y  # (N, n)
        en = (e / X.shape[0]).unsqueeze(1)
        grad_a = (s * en).sum(dim=-1)
        grad_W = ((ds * en) @ X) * a.unsqueeze(-1) * mask
        return -self.net.join(grad_a, grad_W)

    def directional(self, theta: Tensor, mask: Tensor, u: Tensor) -> Tensor:
        """``∇_θ A(θ; M) u`` in closed form (it needs ``σ''``), ``(N, D)``: with
        ``ż = (Ẇ ⊙ M) x``, ``ṡ = σ' ż``, ``ė_i = Σ_r (ȧ_r σ_ri + a_r ṡ_ri)``, the ``a``-block is
        ``(1/n) Σ_i (ṡ e + σ ė)`` and the ``w``-block
        ``M ⊙ (1/n) Σ_i (ȧ σ' e + a (σ'' ż e + σ' ė)) x_i`` (negated)."""
        X, y = self._data(theta)
        a, W = self.net.split(theta)
        a_dot, W_dot = self.net.split(u)
        z = (W * mask) @ X.T
        z_dot = (W_dot * mask) @ X.T
        s, ds, d2 = _activations(self.net, z)
        e = (a.unsqueeze(-1) * s).sum(dim=1) - y
        s_dot = ds * z_dot
        e_dot = (a_dot.unsqueeze(-1) * s + a.unsqueeze(-1) * s_dot).sum(dim=1)
        n = X.shape[0]
        en, en_dot = (e / n).unsqueeze(1), (e_dot / n).unsqueeze(1)
        grad_a = (s_dot * en + s * en_dot).sum(dim=-1)
        weights = (a_dot.unsqueeze(-1) * ds * en
                   + a.unsqueeze(-1) * (d2 * z_dot * en + ds * en_dot))
        return -self.net.join(grad_a, (weights @ X) * mask)
