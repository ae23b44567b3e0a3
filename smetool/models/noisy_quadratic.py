"""A quadratic objective with additive Gaussian gradient noise, batched over paths.

``f(x) = ½ (x − x*)ᵀ H (x − x*)`` and the stochastic gradient ``∇f_γ(x) = H (x − x*) + L z`` with
``z ~ N(0, I_D)`` drawn afresh per step and path: the gradient of the random quadratic
``f_γ(x) = f(x) + zᵀLᵀx``, whose Hessian is ``H`` for every ``γ`` and whose gradient noise
``Σ = L Lᵀ`` does not depend on ``x``. On this problem the mean of one step of SAM, USAM and
SignSGD is a closed-form function of ``∇f(x)`` (see :mod:`smetool.algorithms.sam` and
:mod:`smetool.algorithms.signsgd`), which is what makes their SMEs' drifts exact and the
small-noise control variates applicable.

References
----------
E. M. Compagnoni et al., "An SDE for modeling SAM: theory and insights", ICML 2023 (the quadratic
with Gaussian noise is their test problem for the SAM SDEs); E. M. Compagnoni et al., "Adaptive
methods through the lens of SDEs", ICLR 2025 (SignSGD with Gaussian gradient noise).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .landscape import Landscape

__all__ = ["NoisyQuadratic", "as_matrix"]


def as_matrix(value: Any, name: str, shape: tuple[int, ...], owner: str,
              dtype: torch.dtype = torch.float64) -> Tensor:
    """``value`` as a finite floating tensor of the given shape (``-1`` = any size)."""
    try:
        out = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{owner}: `{name}` must be a real array; got {type(value).__name__}.") from None
    if out.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, out.shape)):
        want = "(" + ", ".join("n" if s == -1 else str(s) for s in shape) + ")"
        raise ValueError(f"{owner}: `{name}` must have shape {want}; got {tuple(out.shape)}.")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{owner}: `{name}` must be finite; it holds NaN or inf.")
    return out


class NoisyQuadratic(Landscape):
    """``f(x) = ½ (x − x*)ᵀ H (x − x*)`` with gradient noise ``L z``, ``z ~ N(0, I)``.

    Parameters
    ----------
    hessian : array-like, (D, D)
        ``H``, symmetric.
    minimiser : array-like, (D,)
        ``x*``.
    noise_factor : array-like, (D, D)
        ``L``; the gradient-noise covariance is ``Σ = L Lᵀ``.
    dtype : torch.dtype
        Of the stored tensors (computations follow the state's dtype and device).

    Raises
    ------
    ValueError
        Wrong shapes, non-finite entries, a non-symmetric ``H``.

    Examples
    --------
    >>> q = NoisyQuadratic([[2.0, 0.0], [0.0, 1.0]], [0.0, 0.0], [[0.5, 0.0], [0.0, 0.5]])
    >>> q.gradient(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    tensor([[2., 1.]], dtype=torch.float64)
    """

    def __init__(self, hessian: Any, minimiser: Any, noise_factor: Any, *,
                 dtype: torch.dtype = torch.float64):
        owner = type(self).__name__
        H = as_matrix(hessian, "hessian", (-1, -1), owner, dtype)
        D = H.shape[0]
        if H.shape != (D, D) or not torch.allclose(H, H.T, rtol=0.0, atol=1e-12 * float(H.abs().max())):
            raise ValueError(f"{owner}: `hessian` must be a symmetric square matrix; got shape "
                             f"{tuple(H.shape)}.")
        self.hessian = H
        self.minimiser = as_matrix(minimiser, "minimiser", (D,), owner, dtype)
        self.noise_factor = as_matrix(noise_factor, "noise_factor", (D, D), owner, dtype)

    label = "noisy quadratic"

    @property
    def dim(self) -> int:
        """``D``."""
        return self.hessian.shape[0]

    @property
    def n_params(self) -> int:
        """``D`` (the :class:`~smetool.models.landscape.Landscape` contract)."""
        return self.dim

    @property
    def noise_covariance(self) -> Tensor:
        """``Σ = L Lᵀ``, (D, D)."""
        return self.noise_factor @ self.noise_factor.T

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__}: `x` must have shape (paths, {self.dim}); got "
                             f"{tuple(x.shape)}.")

    def loss(self, x: Tensor) -> Tensor:
        """``f(x)``: ``(P, D) -> (P,)``."""
        self._check(x)
        r = x - self.minimiser.to(x)
        return 0.5 * (r * (r @ self.hessian.to(x))).sum(dim=1)

    def gradient(self, x: Tensor) -> Tensor:
        """``∇f(x) = H (x − x*)``: ``(P, D) -> (P, D)``."""
        self._check(x)
        return (x - self.minimiser.to(x)) @ self.hessian.to(x)

    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        """``∇²f(x) v = H v`` (closed form, no autograd) for ``v (P, D)`` or blocks
        ``(P, s, D)``."""
        return v @ self.hessian.to(v)

    def hessian_matrix(self, x: Tensor) -> Tensor:
        """``H`` for every path, ``(P, D, D)``."""
        return self.hessian.to(x).expand(x.shape[0], -1, -1)

    def draw_minibatch(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                       device: torch.device | str) -> Tensor:
        """``z ~ N(0, I)`` of one stochastic gradient: the Gaussian model's "minibatch"."""
        return self.sample_z(n_paths, generator, dtype=dtype, device=device)

    def minibatch_gradient(self, x: Tensor, batch: Tensor) -> Tensor:
        """``∇f_γ(x) = H (x − x*) + L z`` for ``z = batch``."""
        return self.gradient(x) + self.gradient_noise(batch)

    def random_init(self, generator: torch.Generator) -> Tensor:
        """``x* + N(0, I)``, ``(D,)``."""
        return self.minimiser.double() + torch.randn(self.dim, generator=generator,
                                                     dtype=torch.float64)

    def sample_z(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                 device: torch.device | str) -> Tensor:
        """Standard normal ``z`` of one step, ``(P, D)`` (independent of the state)."""
        return torch.randn(n_paths, self.dim, generator=generator, dtype=dtype, device=device)

    def gradient_noise(self, z: Tensor) -> Tensor:
        """``L z`` for ``z (P, D)``: ``(P, D)``."""
        return z @ self.noise_factor.to(z).T

    def __repr__(self) -> str:
        return f"NoisyQuadratic(D={self.dim})"
