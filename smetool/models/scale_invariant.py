"""A scale-invariant loss with scale-invariant Gaussian gradient noise, batched over paths.

``L(w) = ℓ(ŵ)``, ``ŵ = w/‖w‖``, with ``ℓ(u) = ½ uᵀAu − bᵀu``: the loss of a linear model followed by
a normalisation (``L(cw) = L(w)`` for ``c > 0``), the situation of a layer followed by batch or
layer normalisation. A step's stochastic loss is ``L_z(w) = L(w) + σ zᵀŵ`` with ``z ~ N(0, I_d)``,
itself scale-invariant, so its gradient

    ∇L_z(w) = P_w (Aŵ − b + σ z) / ‖w‖,      P_w = I − ŵŵᵀ,

is orthogonal to ``w`` and scales like ``1/‖w‖`` — the two facts behind Li, Lyu & Arora's analysis
of SGD with weight decay on normalised networks. The noise covariance is
``Σ(w) = σ² P_w / ‖w‖²``, of trace ``σ² (d − 1) / ‖w‖²``.

``noise="sphere"`` replaces ``P_w z`` by ``√(d−1) P_w z / ‖P_w z‖`` — uniform on the sphere of the
tangent space, with the same mean (0) and covariance (``P_w``) but a constant norm: with ``A = 0``,
``b = 0`` (pure noise) the discrete norm is then deterministic and
:mod:`smetool.exact.scale_invariant` gives the discrete algorithm's moments exactly.

References
----------
Z. Li, K. Lyu, S. Arora, "Reconciling modern deep learning with traditional optimization analyses:
the intrinsic learning rate", NeurIPS 2020.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..checks import check_nonnegative
from .landscape import Landscape, block_hvp
from .noisy_quadratic import as_matrix

__all__ = ["NormalisedQuadratic", "NOISE_LAWS"]

NOISE_LAWS = ("gaussian", "sphere")
"""The laws of the tangent gradient noise: ``P_w z`` or its constant-norm version."""


class NormalisedQuadratic(Landscape):
    """``L(w) = ½ ŵᵀAŵ − bᵀŵ`` with gradient noise ``σ P_w z / ‖w‖`` (see the module docstring).

    Parameters
    ----------
    A : array-like, (d, d)
        Symmetric.
    b : array-like, (d,)
    noise_std : float
        ``σ ≥ 0``.
    noise : {"gaussian", "sphere"}
        The law of the tangent noise (same mean and covariance).

    Raises
    ------
    ValueError
        Shapes, non-finite entries, a non-symmetric ``A``, ``d < 2``, a negative ``σ``, an unknown
        ``noise``.

    Examples
    --------
    >>> p = NormalisedQuadratic([[1.0, 0.0], [0.0, -1.0]], [0.0, 0.0], 0.5)
    >>> w = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    >>> p.loss(2 * w), p.loss(w)
    (tensor([0.5000], dtype=torch.float64), tensor([0.5000], dtype=torch.float64))
    """

    def __init__(self, A: Any, b: Any, noise_std: float, *, noise: str = "gaussian",
                 dtype: torch.dtype = torch.float64):
        owner = type(self).__name__
        A = as_matrix(A, "A", (-1, -1), owner, dtype)
        d = A.shape[0]
        if A.shape != (d, d) or d < 2 or not torch.allclose(A, A.T, rtol=0.0, atol=1e-12):
            raise ValueError(f"{owner}: `A` must be a symmetric d × d matrix with d ≥ 2; got shape "
                             f"{tuple(A.shape)}.")
        if noise not in NOISE_LAWS:
            raise ValueError(f"{owner}: `noise` must be one of {', '.join(NOISE_LAWS)}; got {noise!r}.")
        self.A, self.b = A, as_matrix(b, "b", (d,), owner, dtype)
        self.noise_std = check_nonnegative(noise_std, "noise_std", owner)
        self.noise = noise

    label = "normalised quadratic"

    @property
    def dim(self) -> int:
        """``d``."""
        return self.A.shape[0]

    @property
    def n_params(self) -> int:
        """``d`` (the :class:`~smetool.models.landscape.Landscape` contract)."""
        return self.dim

    @property
    def noise_trace(self) -> float:
        """``tr Σ(w) ‖w‖² = σ² (d − 1)``, the noise trace at unit norm."""
        return self.noise_std**2 * (self.dim - 1)

    def _unit(self, w: Tensor) -> tuple[Tensor, Tensor]:
        if w.ndim != 2 or w.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__}: `w` must have shape (paths, {self.dim}); got "
                             f"{tuple(w.shape)}.")
        norm = w.norm(dim=1, keepdim=True)
        return w / norm, norm

    @staticmethod
    def tangent(u: Tensor, v: Tensor) -> Tensor:
        """``P_u v = v − u (u·v)`` for unit ``u``: ``(P, d), (P, d) -> (P, d)``."""
        return v - u * (u * v).sum(dim=1, keepdim=True)

    def loss(self, w: Tensor) -> Tensor:
        """``L(w) = ℓ(ŵ)``: ``(P, d) -> (P,)``."""
        u, _ = self._unit(w)
        return 0.5 * (u * (u @ self.A.to(w))).sum(dim=1) - u @ self.b.to(w)

    def gradient(self, w: Tensor) -> Tensor:
        """``∇L(w) = P_w (Aŵ − b) / ‖w‖``: ``(P, d) -> (P, d)`` (orthogonal to ``w``)."""
        u, norm = self._unit(w)
        return self.tangent(u, u @ self.A.to(w) - self.b.to(w)) / norm

    def noise_direction(self, w: Tensor, z: Tensor) -> Tensor:
        """The tangent noise ``ξ`` at ``w`` for standard normal ``z (P, d)``: ``P_w z``
        (gaussian) or ``√(d−1) P_w z / ‖P_w z‖`` (sphere); mean 0, covariance ``P_w``."""
        u, _ = self._unit(w)
        xi = self.tangent(u, z)
        if self.noise == "sphere":
            xi = xi * (math.sqrt(self.dim - 1) / xi.norm(dim=1, keepdim=True))
        return xi

    def gradient_noise(self, w: Tensor, z: Tensor) -> Tensor:
        """``σ ξ / ‖w‖``, the gradient noise of one step: ``(P, d)``."""
        _, norm = self._unit(w)
        return self.noise_std * self.noise_direction(w, z) / norm

    def noise_covariance(self, w: Tensor) -> Tensor:
        """``Σ(w) = σ² P_w / ‖w‖²``, ``(P, d, d)``."""
        u, norm = self._unit(w)
        eye = torch.eye(self.dim, dtype=w.dtype, device=w.device)
        P = eye - u.unsqueeze(2) * u.unsqueeze(1)
        return (self.noise_std**2) * P / (norm * norm).unsqueeze(2)

    def hvp(self, w: Tensor, V: Tensor) -> Tensor:
        """``∇²L(w) v`` for blocks ``V (P, s, d)`` by forward-over-reverse differentiation."""
        return block_hvp(lambda x: self.loss(x.unsqueeze(0))[0], w, V)

    def draw_minibatch(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                       device: torch.device | str) -> Tensor:
        """``z ~ N(0, I_d)`` of one stochastic gradient (projected at the state)."""
        return torch.randn(n_paths, self.dim, generator=generator, dtype=dtype, device=device)

    def minibatch_gradient(self, w: Tensor, batch: Tensor) -> Tensor:
        """``∇L(w) + σ ξ(w, z)/‖w‖`` for ``z = batch``."""
        return self.gradient(w) + self.gradient_noise(w, batch)

    def random_init(self, generator: torch.Generator) -> Tensor:
        """``N(0, I_d)`` (non-zero almost surely), ``(d,)``."""
        return torch.randn(self.dim, generator=generator, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"NormalisedQuadratic(d={self.dim}, noise_std={self.noise_std:g}, noise={self.noise!r})"
