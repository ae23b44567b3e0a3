"""Representations of the dropout SME's diffusion ``√lr Σ(θ)^{1/2}`` as small classes.

Every representation has covariance exactly ``lr Σ``; they differ in the SDE noise kind they give
(and so in which solvers apply) and in cost. See :class:`~smetool.algorithms.DropoutSME`.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import torch
from torch import Tensor

from ..checks import check_positive_int
from ..models.dropout_problem import DropoutProblem, DropoutTerms
from ..sde import NoiseKind

__all__ = ["DropoutNoise", "FactorNoise", "GaussianNoise", "MaskPairNoise", "CovarianceNoise",
           "NOISE_REPRESENTATIONS", "as_dropout_noise"]


class DropoutNoise(abc.ABC):
    """A representation of the dropout SME's diffusion ``√lr Σ(θ)^{1/2}``.

    Every representation has covariance exactly ``lr Σ``; they differ in the SDE noise kind they
    give (which solvers apply) and in cost. Subclasses implement the methods of their kind.
    """

    kind: ClassVar[NoiseKind]

    def noise_dim(self, problem: DropoutProblem) -> int | None:
        """``M``, the Brownian dimension (None for SAMPLED noise)."""
        return None

    def diffusion(self, problem: DropoutProblem, lr: float, x: Tensor) -> Tensor:
        """The diffusion in the layout of :attr:`kind` (GENERAL and COVARIANCE kinds)."""
        raise NotImplementedError(  # as SDE.diffusion: not provided by a SAMPLED representation
            f"{self!r} gives {self.kind.value} noise, which has no diffusion matrix.")

    def product(self, problem: DropoutProblem, lr: float, x: Tensor, dW: Tensor,
                terms: DropoutTerms | None = None) -> Tensor:
        """``σ(x) dW`` without forming ``σ`` (GENERAL kind with a matrix-free product)."""
        raise NotImplementedError(  # only a GENERAL representation provides the product
            f"{self!r} has no matrix-free product with Brownian increments.")

    def sample(self, problem: DropoutProblem, lr: float, x: Tensor,
               generator: torch.Generator) -> Tensor:
        """A draw with covariance ``lr Σ(x)`` (SAMPLED kind), ``(P, D)``."""
        raise NotImplementedError(  # as SDE.sample_noise: only SAMPLED representations draw
            f"{self!r} gives {self.kind.value} noise, which is not sampled.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FactorNoise(DropoutNoise):
    """GENERAL noise ``√lr F(θ) dW`` with the polynomial factor ``F`` (``M = m(m+1)/2``).

    The exact Gaussian SME with smooth coefficients: every solver applies at its declared order;
    Euler–Maruyama and the small-noise Heun scheme use the matrix-free product ``F dW``.
    """

    kind = NoiseKind.GENERAL

    def noise_dim(self, problem: DropoutProblem) -> int | None:
        return problem.noise_dim

    def diffusion(self, problem: DropoutProblem, lr: float, x: Tensor) -> Tensor:
        return math.sqrt(lr) * problem.noise_factor(x)

    def product(self, problem: DropoutProblem, lr: float, x: Tensor, dW: Tensor,
                terms: DropoutTerms | None = None) -> Tensor:
        """``√lr F(x) dW`` without forming ``F`` (``terms``: those of ``x`` when known)."""
        return math.sqrt(lr) * problem.noise_factor_matvec(x, dW, terms)


class GaussianNoise(DropoutNoise):
    """SAMPLED noise ``ζ = √lr F z``, ``z ~ N(0, I_M)``, drawn matrix-free (Euler–Maruyama only)."""

    kind = NoiseKind.SAMPLED

    def sample(self, problem: DropoutProblem, lr: float, x: Tensor,
               generator: torch.Generator) -> Tensor:
        return math.sqrt(lr) * problem.sample_gaussian_noise(x, generator)


class MaskPairNoise(DropoutNoise):
    """SAMPLED noise from ``n_pairs`` pairs of dropout masks: exact covariance, not Gaussian.

    Parameters
    ----------
    n_pairs : int
        ``k ≥ 1``.
    """

    kind = NoiseKind.SAMPLED

    def __init__(self, n_pairs: int = 1):
        self.n_pairs = check_positive_int(n_pairs, "n_pairs")

    def sample(self, problem: DropoutProblem, lr: float, x: Tensor,
               generator: torch.Generator) -> Tensor:
        return math.sqrt(lr) * problem.sample_mask_noise(x, generator, self.n_pairs)

    def __repr__(self) -> str:
        return f"MaskPairNoise(n_pairs={self.n_pairs})"


class CovarianceNoise(DropoutNoise):
    """COVARIANCE noise ``lr Σ(θ)`` ``(P, D, D)``, factored by the solver (``O(D³)`` per path)."""

    kind = NoiseKind.COVARIANCE

    def noise_dim(self, problem: DropoutProblem) -> int | None:
        return problem.n_params

    def diffusion(self, problem: DropoutProblem, lr: float, x: Tensor) -> Tensor:
        return lr * problem.noise_covariance(x)


NOISE_REPRESENTATIONS: dict[str, type[DropoutNoise]] = {
    "factor": FactorNoise, "gaussian": GaussianNoise, "masks": MaskPairNoise,
    "covariance": CovarianceNoise,
}
"""Names of the noise representations, for the command line and :meth:`DropoutAlgorithm.sme`."""


def as_dropout_noise(noise: DropoutNoise | str, n_pairs: int = 1) -> DropoutNoise:
    """A noise representation from an object or a name of :data:`NOISE_REPRESENTATIONS`."""
    if isinstance(noise, DropoutNoise):
        return noise
    if noise not in NOISE_REPRESENTATIONS:
        raise ValueError(
            f"`noise` must be a DropoutNoise or one of {', '.join(NOISE_REPRESENTATIONS)}; got "
            f"{noise!r}.")
    if noise == "masks":
        return MaskPairNoise(n_pairs)
    return NOISE_REPRESENTATIONS[noise]()
