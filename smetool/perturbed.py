"""Slightly wrong SDEs: an SME with its noise covariance scaled or made diagonal, or its drift
blended with another one. They are the hard negative controls of :func:`smetool.verify`: wrong
SMEs that differ from the right one by less than the check's detection limit's double, which a
decisive order check must fail.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .noise import diffusion_matrix
from .sde import SDE, NoiseKind

__all__ = ["NoiseScaled", "DiagonalNoise", "DriftBlend", "noise_covariance"]


def noise_covariance(sde: SDE, t: float, x: Tensor) -> Tensor:
    """``σσᵀ(t, x)`` ``(P, D, D)`` of an SDE with Brownian noise (``Σ`` itself for COVARIANCE).

    Raises
    ------
    ValueError
        SAMPLED noise (its covariance is only known through draws).
    """
    if sde.noise_kind is NoiseKind.SAMPLED:
        raise ValueError(f"{sde!r}: SAMPLED noise has no diffusion matrix to read Σ from.")
    g = sde.diffusion(t, x)
    if sde.noise_kind is NoiseKind.COVARIANCE:
        return g
    B = diffusion_matrix(sde, g, x.shape[0])
    return B @ B.transpose(-1, -2)


class _NoiseChanged(SDE):
    """An SDE with ``self.sde``'s drift unchanged and its own noise: the drift, and the SDE whose
    drift linearisation the control variates may share (``drift_source``)."""

    sde: SDE

    def drift(self, t: float, x: Tensor) -> Tensor:
        return self.sde.drift(t, x)

    @property
    def drift_source(self) -> SDE:
        """The SDE whose drift this one uses unchanged (its linearisation can be shared)."""
        return getattr(self.sde, "drift_source", self.sde)


class NoiseScaled(_NoiseChanged):
    """Another SDE with its noise covariance multiplied by ``factor``: ``σ → √factor σ``.

    Parameters
    ----------
    sde : SDE
        Any noise kind.
    factor : float
        ``c ≥ 0`` (``Σ → c Σ``).
    """

    def __init__(self, sde: SDE, factor: float):
        if not isinstance(sde, SDE):
            raise TypeError(f"`sde` must be an smetool SDE; got {type(sde).__name__}.")
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 0):
            raise ValueError(f"`factor` must be a finite number ≥ 0; got {factor!r}.")
        self.sde, self.factor = sde, float(factor)
        self.noise_kind, self.noise_dim = sde.noise_kind, sde.noise_dim
        self._root = math.sqrt(self.factor)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        scale = self.factor if self.noise_kind is NoiseKind.COVARIANCE else self._root
        return scale * self.sde.diffusion(t, x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        return self._root * self.sde.diffusion_product(t, x, dW)

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        return self._root * self.sde.sample_noise(t, x, generator)

    def __repr__(self) -> str:
        return f"NoiseScaled({self.sde!r}, factor={self.factor:g})"


class DiagonalNoise(_NoiseChanged):
    """Another SDE with its noise covariance replaced by its diagonal: ``Σ → diag Σ``.

    DIAGONAL noise with ``b_i = √Σ_ii``: every coordinate keeps its own variance, the
    correlations between coordinates are dropped.

    Parameters
    ----------
    sde : SDE
        Brownian noise of any kind (SAMPLED noise is refused: its Σ is not available).
    """

    noise_kind = NoiseKind.DIAGONAL

    def __init__(self, sde: SDE):
        if not isinstance(sde, SDE):
            raise TypeError(f"`sde` must be an smetool SDE; got {type(sde).__name__}.")
        if sde.noise_kind is NoiseKind.SAMPLED:
            raise ValueError(f"`sde` must have Brownian noise to read diag Σ from; got {sde!r}.")
        self.sde = sde

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        g = self.sde.diffusion(t, x)
        if self.sde.noise_kind is NoiseKind.COVARIANCE:
            variance = torch.diagonal(g, dim1=-2, dim2=-1)
        else:  # diag(B Bᵀ) without forming B Bᵀ
            B = diffusion_matrix(self.sde, g, x.shape[0])
            variance = (B * B).sum(dim=-1)
        return variance.clamp_min(0.0).sqrt()

    def __repr__(self) -> str:
        return f"DiagonalNoise({self.sde!r})"


class DriftBlend(SDE):
    """The noise of one SDE with the drift ``(1 − w) b_a + w b_b`` blended with another's.

    With ``a`` an order-2 SME and ``b`` the order-1 SME of the same algorithm,
    ``w = ½`` halves the order-2 drift correction ``b_a − b_b``.

    Parameters
    ----------
    a : SDE
        Gives the noise and the drift at weight ``1 − w``.
    b : SDE
        Gives the drift at weight ``w``.
    weight : float
        ``w``, finite.
    """

    def __init__(self, a: SDE, b: SDE, weight: float):
        for sde, label in ((a, "a"), (b, "b")):
            if not isinstance(sde, SDE):
                raise TypeError(f"`{label}` must be an smetool SDE; got {type(sde).__name__}.")
        if not (isinstance(weight, (int, float)) and math.isfinite(weight)):
            raise ValueError(f"`weight` must be a finite number; got {weight!r}.")
        self.a, self.b, self.weight = a, b, float(weight)
        self.noise_kind, self.noise_dim = a.noise_kind, a.noise_dim

    def drift(self, t: float, x: Tensor) -> Tensor:
        return torch.lerp(self.a.drift(t, x), self.b.drift(t, x), self.weight)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return self.a.diffusion(t, x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        return self.a.diffusion_product(t, x, dW)

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        return self.a.sample_noise(t, x, generator)

    def __repr__(self) -> str:
        return f"DriftBlend({self.a!r}, {self.b!r}, weight={self.weight:g})"
