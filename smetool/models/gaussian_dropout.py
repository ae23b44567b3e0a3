"""Gaussian (multiplicative) dropout on a two-layer network, with exact moments.

Each hidden neuron's output is multiplied by ``1 + η_r`` with ``η_r ~ N(0, v)`` independent,
``v = (1 − p)/p``: the Gaussian dropout of Srivastava et al. (2014, §10), whose multiplier has the
mean and variance of Bernoulli dropout's ``b/p`` with keep probability ``p``.

The dropout gradient is the same quadratic polynomial in ``η`` as for Bernoulli dropout
(:mod:`smetool.models.dropout_problem`),
``G(η) = ∇R_S + Σ_r η_r A_r + Σ_{r,q} η_r η_q B_rq``, so its moments need those of ``η`` up to
order four only: ``E η = E η³ = 0``, ``E η² = v``, ``E η⁴ = 3v²``. Hence, exactly,

* ``E G = ∇R_S + v Σ_r B_rr = ∇L_S`` — the same expected loss ``L_S = R_S + R_1`` as Bernoulli
  dropout with the same ``v`` (so the same drift, and the same order-2 drift);
* ``G − E G = Σ_r η_r A_r + Σ_r (η_r² − v) B_rr + Σ_{r<q} η_r η_q S_rq`` with uncorrelated
  coefficients of variances ``v``, ``2v²`` and ``v²`` (``η_r`` and ``η_r² − v`` are uncorrelated
  because ``E η³ = 0``, where for Bernoulli dropout they are proportional);
* ``Σ = v Σ_r A_r A_rᵀ + 2v² Σ_r B_rr B_rrᵀ + v² Σ_{r<q} S_rq S_rqᵀ = F Fᵀ`` with the polynomial
  factor ``F = [√v A_1 … √v A_m, v S_12 … v S_{m−1,m}, √2 v B_11 … √2 v B_mm]`` of
  ``M = m(m+1)/2 + m`` columns: Bernoulli dropout's factor with ``c = 0`` (its first
  ``m(m+1)/2`` columns) and ``m`` more, each on one neuron's block.

References
----------
N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, "Dropout: a simple way to
prevent neural networks from overfitting", JMLR 15 (2014), §10 (multiplicative Gaussian noise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_positive_int
from .dropout_kernels import pair_matrix
from .dropout_problem import DropoutProblem, DropoutTerms, GradSecondMoment, default_problem

__all__ = ["GaussianDropoutProblem", "gaussian_default_problem"]


class GaussianDropoutProblem(DropoutProblem):
    """Full-batch Gaussian dropout on a two-layer network, with exact moments.

    Parameters as :class:`~smetool.models.DropoutProblem`; ``keep_prob = p`` sets the variance
    ``v = (1 − p)/p`` of the multipliers ``1 + η``, ``η ~ N(0, v)`` (Srivastava et al. 2014, §10).
    Every method has the meaning it has for Bernoulli dropout, with Gaussian multipliers; the
    noise factor has ``M = m(m+1)/2 + m`` columns (see the module).

    References
    ----------
    N. Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
    JMLR 15 (2014).
    """

    @property
    def kappa3(self) -> float:
        """``E η³ = 0``."""
        return 0.0

    @property
    def kappa4(self) -> float:
        """``E η⁴ = 3v²``."""
        return 3.0 * self.v * self.v

    @property
    def _c(self) -> float:
        # No two-point identity: the η_r² − v part gets its own columns (c = 0 in the shared ones).
        return 0.0

    @property
    def _pair_columns(self) -> int:
        m = self.width
        return m * (m + 1) // 2

    @property
    def noise_dim(self) -> int:
        """``M = m(m+1)/2 + m``: ``m`` singles, the pairs, then ``m`` squares."""
        return self._pair_columns + self.width

    def __repr__(self) -> str:
        return super().__repr__().replace("DropoutProblem(", "GaussianDropoutProblem(", 1)

    def sample_scale(self, n_paths: int, generator: torch.Generator, *,
                     dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> Tensor:
        """Draw the multipliers ``1 + η``, ``η ~ N(0, v)``, one per neuron and path, ``(P, m)``."""
        n_paths = check_positive_int(n_paths, "n_paths")
        dtype = self.X.dtype if dtype is None else dtype
        device = self.X.device if device is None else device
        eta = torch.randn(n_paths, self.width, generator=generator, dtype=dtype, device=device)
        return 1.0 + math.sqrt(self.v) * eta

    def _noise_matrix(self, z: Tensor, diag_shift: float = 0.0) -> Tensor:
        m, rv, M0 = self.width, math.sqrt(self.v), self._pair_columns
        diag = (math.sqrt(2.0) * self.v) * z[:, M0:]
        if diag_shift:
            diag = diag - diag_shift
        return pair_matrix(diag, self.v * z[:, m:M0], rv * z[:, :m], self._pair_index(z.device))

    def _squares(self, parts: DropoutTerms) -> Tensor:
        """``B_rr`` on neuron ``r``'s own block, ``(P, m, k)``."""
        return torch.diagonal(self._B(parts), dim1=1, dim2=2).transpose(1, 2)

    def noise_factor(self, theta: Tensor) -> Tensor:
        """``F(θ)`` with ``F Fᵀ = Σ(θ)``, ``(P, D, M)``: the shared columns, then ``√2 v B_rr``."""
        shared = super().noise_factor(theta)
        Bd = self._squares(self.terms(theta))  # (P, m, k)
        P, m, D = theta.shape[0], self.width, self.n_params
        extra = theta.new_zeros(P, D, m)
        ar = torch.arange(m, device=theta.device)
        extra[:, self._block_rows(ar), ar.unsqueeze(1)] = math.sqrt(2.0) * self.v * Bd
        return torch.cat([shared, extra], dim=2)

    def noise_covariance(self, theta: Tensor) -> Tensor:
        """``Σ(θ)``, ``(P, D, D)``: the shared part (``c = 0``) plus ``2v² Σ_r B_rr B_rrᵀ``."""
        sigma = super().noise_covariance(theta)
        Bd = self._squares(self.terms(theta))
        squares = torch.diag_embed(Bd.permute(0, 2, 1)).permute(0, 2, 3, 1)  # (P, r, s, k)
        cols = self._to_theta(squares)  # (P, m, D): B_rr embedded in θ
        return sigma + 2.0 * self.v * self.v * torch.einsum("prd,pre->pde", cols, cols)

    def grad_second_moment(self, theta: Tensor) -> GradSecondMoment:
        """``‖∇L_S‖² + tr Σ``, with ``tr Σ`` including ``2v² Σ_r ‖B_rr‖²``."""
        base = super().grad_second_moment(theta)
        Bd = self._squares(self.terms(theta))
        extra = 2.0 * self.v * self.v * (Bd * Bd).sum(dim=(1, 2))
        return GradSecondMoment(grad_norm_sq=base.grad_norm_sq,
                                trace_sigma=base.trace_sigma + extra)

    @classmethod
    def like(cls, problem: DropoutProblem) -> GaussianDropoutProblem:
        """The Gaussian-dropout problem on the data, network and ``p`` of ``problem``."""
        X = problem.X[:, :-1] if problem.bias else problem.X
        return cls(X, problem.y, width=problem.width, keep_prob=problem.keep_prob,
                   activation=problem.net.activation, bias=problem.bias)


def gaussian_default_problem(dtype: torch.dtype = torch.float64, **kwargs
                             ) -> tuple[GaussianDropoutProblem, Tensor]:
    """:func:`~smetool.models.dropout_problem.default_problem` with Gaussian dropout (same
    keywords, same data and ``θ0``)."""
    problem, theta0 = default_problem(dtype, **kwargs)
    return GaussianDropoutProblem.like(problem), theta0
