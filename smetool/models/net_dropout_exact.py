"""The exact dropout moments of a network whose only dropout is on the input of its final linear
layer, with the squared loss.

Let ``φ_i ∈ R^m`` be the features of example ``i`` entering the last layer ``f_i = W φ̃_i + b``
(``W ∈ R^{C×m}``), where dropout multiplies feature ``r`` by ``1 + η_r = b_r/p`` (one mask per
step, shared by the data). With the unit contributions ``h_ri = W_{:r} φ_ri ∈ R^C`` and the
residuals ``e_i = W φ_i + b − y_i`` without dropout, the dropout loss is a quadratic polynomial
in ``η``,

.. math::

    R_S^{drop}(θ; η) = R_S + Σ_r η_r a_r + ½ Σ_{r,q} η_r η_q c_{rq},\\quad
    a_r = \\tfrac1n Σ_i e_i·h_{ri},\\quad c_{rq} = \\tfrac1n Σ_i h_{ri}·h_{qi},

exactly the two-layer structure of :mod:`smetool.models.dropout_problem` with the neuron outputs
replaced by the last hidden features (the coefficients are functions of *all* parameters, not of
one neuron's block). Since ``η_r² = v + c η_r`` (``v = (1−p)/p``, ``c = (1−2p)/p``):

* ``L_S = E_η R_S^drop = R_S + R_1``, ``R_1 = v/(2n) Σ_{i,r} φ_ri² ‖W_{:r}‖²``, and
  ``E_η ∇R_S^drop = ∇L_S``;
* ``∇R_S^drop − ∇L_S = Σ_r η_r ∇(a_r + (c/2) c_rr) + Σ_{r<q} η_r η_q ∇c_rq`` with uncorrelated
  coefficients of variances ``v`` and ``v²``, so ``Σ = F Fᵀ`` with
  ``F = ∂Φ/∂θ``, ``Φ = [√v (a_r + (c/2) c_rr)]_{r} ⊕ [v c_rq]_{r<q}`` (``M = m(m+1)/2`` columns,
  the column order of :meth:`~smetool.models.DropoutProblem.noise_factor`). ``F`` is polynomial in
  the network's terms: a smooth diffusion for a smooth network.

``F z`` is one vector–Jacobian product of ``Φ`` (:func:`torch.func.vjp`), no ``D × M`` matrix.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024 (the two-layer case this generalises).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vjp, vmap

from ..device import functorch_exclusive
from .net_dropout import MaskSlot, NetDropoutModel, hvp

__all__ = ["LastLayerDropout", "last_layer_reason", "mask_enumeration"]


def last_layer_reason(model: NetDropoutModel) -> str | None:
    """Why the closed forms of :class:`LastLayerDropout` do not apply to ``model`` (``None``: they
    do). They need an ``nn.Sequential`` ending in (dropout, ``nn.Linear``), no other dropout, an
    elementwise dropout on ``(n, m)`` features and the squared loss."""
    net = model.module
    if model.loss_name != "mse":
        return f"the loss is {model.loss_name!r}, not 'mse'"
    if len(model.layers) != 1:
        return f"it has {len(model.layers)} dropout layers"
    if not isinstance(net, nn.Sequential) or len(net) < 2:
        return "the module is not an nn.Sequential ending in (dropout, nn.Linear)"
    children = list(net.children())
    if not isinstance(children[-1], nn.Linear) or not isinstance(children[-2], MaskSlot):
        return "the dropout is not on the input of the final nn.Linear"
    if len(model.layers[0].mask_shape) != 1:
        return "the dropout's features are not a vector per example"
    return None


class JacobianNoiseFactor(ABC):
    """The noise factor ``F(θ) = (∂φ/∂θ)ᵀ`` of a per-example feature map ``φ: θ ↦ (M,)`` whose
    Jacobian Gram matrix is the noise covariance, ``Σ = F Fᵀ``: the closed forms of
    :class:`LastLayerDropout` and of its mini-batch version share it.

    Subclasses give ``model`` (a :class:`NetDropoutModel`), ``noise_dim`` (``M``) and
    :meth:`_noise_feature`.
    """

    model: NetDropoutModel

    @property
    @abstractmethod
    def noise_dim(self) -> int:
        """``M``, the length of the feature map."""

    @abstractmethod
    def _noise_feature(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """``φ(θ)``, ``(M,)``, for one path ``θ (D,)`` on the data ``X, y``."""

    @functorch_exclusive
    def noise_factor_matvec(self, theta: Tensor, z: Tensor) -> Tensor:
        """``F(θ) z`` without forming ``F``: ``(P, D)`` for ``θ (P, D)``, ``z (P, M)``; one
        vector–Jacobian product per path.

        Raises
        ------
        ValueError
            ``z`` not of shape ``(P, M)``.
        """
        self.model.check_theta(theta)
        if z.shape != (theta.shape[0], self.noise_dim):
            raise ValueError(f"`z` must have shape ({theta.shape[0]}, {self.noise_dim}); got "
                             f"{tuple(z.shape)}.")
        X, y = self.model.data(theta)

        def one(th: Tensor, zz: Tensor) -> Tensor:
            return vjp(lambda t: self._noise_feature(t, X, y), th)[1](zz)[0]

        return vmap(one)(theta, z)

    @functorch_exclusive
    def noise_factor(self, theta: Tensor) -> Tensor:
        """``F(θ)``, ``(P, D, M)``, with ``F Fᵀ = Σ(θ)`` (``M`` backward passes per path)."""
        self.model.check_theta(theta)
        X, y = self.model.data(theta)
        return vmap(jacrev(lambda th: self._noise_feature(th, X, y)))(theta).transpose(1, 2)

    def noise_covariance(self, theta: Tensor) -> Tensor:
        """``Σ(θ) = F Fᵀ``, ``(P, D, D)``."""
        F = self.noise_factor(theta)
        return F @ F.transpose(1, 2)


class LastLayerDropout(JacobianNoiseFactor):
    """Exact ``L_S``, ``∇L_S``, ``∇²L_S u`` and noise factor ``F`` (``Σ = F Fᵀ``) of a network with
    dropout only on the input of its final linear layer and the squared loss.

    Parameters
    ----------
    model : NetDropoutModel

    Raises
    ------
    ValueError
        When the closed forms do not apply (the message says why; use the sampled estimators).

    Notes
    -----
    Per path: ``L_S`` and ``∇L_S`` cost one forward/backward pass; ``F z`` one more pass plus
    ``O(n m² + C m²)``; :meth:`noise_factor` ``M`` backward passes (``jacrev``), ``O(D M)`` memory;
    :meth:`noise_covariance` ``O(D² M)`` time, ``O(D²)`` memory.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024.
    """

    def __init__(self, model: NetDropoutModel):
        if not isinstance(model, NetDropoutModel):
            raise TypeError(f"`model` must be a NetDropoutModel; got {type(model).__name__}.")
        reason = last_layer_reason(model)
        if reason is not None:
            raise ValueError(f"the exact last-layer closed forms do not apply: {reason}.")
        self.model = model
        named = list(model.module.named_children())
        self.body = nn.Sequential(OrderedDict(named[:-2]))
        head_name, head = named[-1]
        self._head_keys = (f"{head_name}.weight", f"{head_name}.bias" if head.bias is not None else None)
        self._body_keys = [n for n, _ in self.body.named_parameters()]
        self.keep_prob = model.layers[0].keep_prob
        self.width = model.layers[0].mask_shape[0]

    @property
    def v(self) -> float:
        """``E η² = (1−p)/p``."""
        return (1.0 - self.keep_prob) / self.keep_prob

    @property
    def noise_dim(self) -> int:
        """``M = m(m+1)/2``: ``m`` single columns, then the pairs ``r < q`` row-major."""
        return self.width * (self.width + 1) // 2

    # ----------------------------------------------------------------------------- one path
    def _terms(self, theta: Tensor, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Features ``φ (n, m)``, last weights ``W (C, m)`` and residuals ``e (n, C)``."""
        params = self.model.unflatten(theta)
        phi = functional_call(self.body, {k: params[k] for k in self._body_keys}, (X,))
        W = params[self._head_keys[0]]
        out = phi @ W.T
        if self._head_keys[1] is not None:
            out = out + params[self._head_keys[1]]
        return phi, W, out - y.reshape(out.shape)

    def _expected_loss_one(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        phi, W, e = self._terms(theta, X, y)
        n = X.shape[0]
        reg = 0.5 * self.v * ((phi * phi) * (W * W).sum(dim=0)).sum() / n
        return 0.5 * (e * e).sum() / n + reg

    def _phi_one(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """``Φ(θ) (M,)`` with ``F = ∂Φ/∂θ``."""
        phi, W, e = self._terms(theta, X, y)
        n, p = X.shape[0], self.keep_prob
        c = (1.0 - 2.0 * p) / p
        a = (phi * (e @ W)).sum(dim=0) / n
        cm = (phi.T @ phi) * (W.T @ W) / n
        ri, qi = torch.triu_indices(self.width, self.width, offset=1, device=theta.device)
        singles = math.sqrt(self.v) * (a + 0.5 * c * torch.diagonal(cm))
        return torch.cat([singles, self.v * cm[ri, qi]])

    # ----------------------------------------------------------------------------- batched
    @functorch_exclusive
    def expected_loss(self, theta: Tensor) -> Tensor:
        """``L_S = R_S + R_1``, ``(P,)``; differentiable by autograd."""
        self.model.check_theta(theta)
        X, y = self.model.data(theta)
        return vmap(lambda th: self._expected_loss_one(th, X, y))(theta)

    def implicit_regularizer(self, theta: Tensor) -> Tensor:
        """``R_1 = v/(2n) Σ_{i,r} φ_ri² ‖W_{:r}‖²``, ``(P,)``."""
        return self.expected_loss(theta) - self.model.loss(theta)

    @functorch_exclusive
    def expected_loss_grad(self, theta: Tensor) -> Tensor:
        """``∇L_S = E_η ∇R_S^drop``, ``(P, D)``."""
        self.model.check_theta(theta)
        X, y = self.model.data(theta)
        return vmap(grad(lambda th: self._expected_loss_one(th, X, y)))(theta)

    def expected_loss_hvp(self, theta: Tensor, vec: Tensor) -> Tensor:
        """``∇²L_S(θ) u`` (forward-over-reverse), ``(P, D)``."""
        self.model.check_theta(theta)
        X, y = self.model.data(theta)
        return hvp(lambda th: self._expected_loss_one(th, X, y), theta, vec)

    def _noise_feature(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """``φ(θ)`` whose Jacobian Gram matrix is ``Σ = Cov_η ∇R_S^drop`` (zero when ``p = 1``)."""
        return self._phi_one(theta, X, y)


def mask_enumeration(model: NetDropoutModel, theta: Tensor,
                     max_units: int = 16) -> tuple[Tensor, Tensor]:
    """``E_η ∇R_S^drop`` and ``Cov_η ∇R_S^drop`` by enumerating every mask: the exact oracle
    of the tests, for networks with few dropout units (any placement, any loss).

    Returns
    -------
    mean : Tensor, (P, D)
    covariance : Tensor, (P, D, D)

    Raises
    ------
    ValueError
        More than ``max_units`` dropout units in all (``2^units`` masks).
    """
    model.check_theta(theta)
    units = sum(layer.units for layer in model.layers)
    if units > max_units:
        raise ValueError(f"`max_units` ({max_units}) is below the network's {units} dropout units "
                         f"({2 ** units} masks to enumerate).")
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=units)), dtype=theta.dtype,
                        device=theta.device)  # (2^u, u)
    probs = bits.new_ones(bits.shape[0])
    masks, start = [], 0
    for layer in model.layers:
        b = bits[:, start:start + layer.units]
        p = layer.keep_prob
        # b p + (1 − b)(1 − p): the probability of each bit, in the dtype of θ
        probs = probs * (b * p + (1.0 - b) * (1.0 - p)).prod(dim=1)
        masks.append((b / p).reshape(-1, *layer.mask_shape))
        start += layer.units
    P, S = theta.shape[0], bits.shape[0]
    rep = tuple(m.repeat(P, *([1] * (m.ndim - 1))) for m in masks)
    G = model.dropout_loss_grad(theta.repeat_interleave(S, dim=0), rep)[1].reshape(P, S, -1)
    mean = torch.einsum("s,psd->pd", probs, G)
    dev = G - mean.unsqueeze(1)
    return mean, torch.einsum("s,psd,pse->pde", probs, dev, dev)
