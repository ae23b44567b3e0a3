"""The :class:`~smetool.models.landscape.Landscape` of a two-layer network on fixed data, in closed
form: :class:`TwoLayerLandscape`, a base of :class:`~smetool.models.DropoutProblem`.

``f = R_S = 1/(2n) Σ_i (f_θ(x_i) − y_i)²`` with its gradient and exact Hessian
(:func:`~smetool.models.two_layer_hessian.loss_hessian`), weighted gradients for minibatches
(``∇ Σ_i w_i ½ e_i² = Σ_i w_i e_i ∇f_i``, assembled per neuron like every gradient of
:class:`~smetool.models.two_layer.TwoLayerNet`), and the neurons as units for condensation.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .landscape import FiniteSum, Units
from .two_layer import TwoLayerNet, is_odd
from .two_layer_hessian import loss_hessian

__all__ = ["TwoLayerLandscape", "INIT_SCALES"]

INIT_SCALES = (0.2, 1.0)
"""``(a_std, w_std)`` of :meth:`TwoLayerLandscape.random_init`: ``a ~ N(0, 0.2²)``,
``W ~ N(0, 1)``, the initialisation of the dropout papers' 1-D experiments as used by
``smetool analyze dropout``."""


class TwoLayerLandscape(FiniteSum):
    """``R_S`` of a two-layer network ``net`` on ``X (n, d)``, ``y (n,)`` (attributes of the
    subclass), batched over paths."""

    net: TwoLayerNet
    X: Tensor
    y: Tensor
    label = "two-layer"

    def _xy(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return (self.X.to(dtype=theta.dtype, device=theta.device),
                self.y.to(dtype=theta.dtype, device=theta.device))

    @property
    def n_points(self) -> int:
        return int(self.X.shape[0])

    def gradient(self, theta: Tensor) -> Tensor:
        """``∇R_S``, ``(P, D)``."""
        X, y = self._xy(theta)
        return self.net.loss_grad(theta, X, y)[1]

    def hessian_matrix(self, theta: Tensor) -> Tensor:
        """``∇²R_S`` in closed form, ``(P, D, D)``."""
        X, y = self._xy(theta)
        return loss_hessian(self.net, theta, X, y)

    def hvp(self, theta: Tensor, V: Tensor) -> Tensor:
        """``∇²R_S V`` from the closed-form Hessian (``D = m (d + 1)`` is small)."""
        return torch.einsum("pde,pse->psd", self.hessian_matrix(theta), V)

    def weighted_gradient(self, theta: Tensor, weights: Tensor) -> Tensor:
        """``Σ_i w_pi e_i ∇f_i``: block ``a_r`` is ``Σ_i w_i e_i σ_ri``, block ``w_r`` is
        ``a_r Σ_i w_i e_i σ'_ri x_i``."""
        X, y = self._xy(theta)
        t = self.net.terms(theta, X)
        e = (t.h.sum(dim=1) - y) * weights
        grad_a = torch.einsum("pmn,pn->pm", t.s, e)
        grad_W = torch.einsum("pmn,nd->pmd", t.ds * e.unsqueeze(1), X) * t.a.unsqueeze(-1)
        return self.net.join(grad_a, grad_W)

    def random_init(self, generator: torch.Generator) -> Tensor:
        """``a ~ N(0, 0.2²)``, ``W ~ N(0, 1)`` (:data:`INIT_SCALES`), ``(D,)``."""
        a_std, w_std = INIT_SCALES
        return self.net.init_params(a_std=a_std, w_std=w_std, generator=generator)

    def units(self, theta: Tensor) -> Units:
        """The neurons: input weights ``w_r`` (bias feature included) and amplitudes
        ``|a_r| ‖w_r‖`` (Luo, Xu, Ma & Zhang, JMLR 2021)."""
        a, W = self.net.split(theta)
        return Units(W, a.abs() * W.norm(dim=-1), is_odd(self.net.activation))
