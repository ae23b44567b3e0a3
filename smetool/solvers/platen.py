"""Platen's explicit (derivative-free) weak order-2.0 scheme for general multi-dimensional noise."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..bibliography import KLOEDEN_PLATEN_1992
from ..noise import apply_diffusion, diffusion_matrix
from ..sde import NoiseKind
from .base import Solver

__all__ = ["PlatenWeak2", "two_point_levy", "additive_step"]

# Evaluate the diffusion at up to this many (state × matrix entry) numbers at once; beyond it the
# perturbed states are processed in slices so that memory stays bounded for large M.
_BATCH_BUDGET = 2**24


def two_point_levy(batch: int, m: int, h: float, generator, dtype, device) -> Tensor:
    """The two-point variables ``V`` of Kloeden & Platen (14.2.8), shape ``(P, M, M)``.

    ``V_{j1 j2} = ±h`` with probability ½ for ``j2 < j1``, ``V_{j1 j1} = −h``, and
    ``V_{j1 j2} = −V_{j2 j1}`` for ``j2 > j1``. They replace the double Itô integrals (Lévy areas)
    to the accuracy weak order 2 needs.
    """
    signs = torch.randint(0, 2, (batch, m, m), generator=generator, device=device).to(dtype) * 2 - 1
    lower = torch.tril(signs, diagonal=-1) * h
    eye = torch.eye(m, dtype=dtype, device=device)
    return lower - lower.transpose(-1, -2) - h * eye


def additive_step(sde, t: float, x: Tensor, h: float, dW: Tensor) -> Tensor:
    """One step of Platen's scheme for ADDITIVE noise ``σ(t)``, Kloeden & Platen (15.1.4):

    .. math::

        Ῡ = Y + a h + b(t) ΔW, \\qquad
        Y_{n+1} = Y + ½(a(t + h, Ῡ) + a(t, Y)) h + ½(b(t) + b(t + h)) ΔW.

    The trapezoidal noise coefficient supplies the ``½ h ∂_t b ΔW`` term of the order-2 weak
    Taylor scheme ((14.2.7): ``(b + ½h(L⁰b + Lʲa)) ΔW`` with ``L⁰b = ∂_t b`` for additive noise);
    with ``b(t) ΔW`` alone a time-dependent diffusion leaves a local error ``O(h²)`` in the
    covariance and the scheme is weak order 1 (the variance error halved with the step on the
    additive problem of :func:`smetool.exact.additive_problem`). Shared by
    :class:`PlatenWeak2` and :class:`~smetool.solvers.SmallNoiseHeun`.

    Parameters
    ----------
    sde : SDE
        With ``noise_kind`` ADDITIVE.
    t, h : float
    x : Tensor, (P, D)
    dW : Tensor, (P, M)

    Returns
    -------
    Tensor, (P, D)
    """
    a0 = sde.drift(t, x)
    noise = apply_diffusion(sde, sde.diffusion(t, x), dW)
    upsilon = x + a0 * h + noise
    # b(t + h) is independent of x; the state argument only carries dtype and device.
    noise_end = apply_diffusion(sde, sde.diffusion(t + h, x), dW)
    return x + 0.5 * (sde.drift(t + h, upsilon) + a0) * h + 0.5 * (noise + noise_end)


def _componentwise_step(sde, t: float, x: Tensor, h: float, dW: Tensor) -> Tensor:
    """Platen's scheme for DIAGONAL (``dW (P, D)``) and SCALAR (``dW (P, 1)``) noise: (15.1.1)
    applied componentwise, with ``R_± = Y + a h ± σ √h`` and ``σ(t + h, R_±)`` as in (15.1.3)."""
    a0 = sde.drift(t, x)
    g0 = sde.diffusion(t, x)  # (P, D)
    noise = g0 * dW
    drift_part = 0.5 * (sde.drift(t + h, x + a0 * h + noise) + a0) * h
    sq = math.sqrt(h)
    base, shift = x + a0 * h, g0 * sq
    # Under the diagonal contract σ_j at the fully shifted state is σ_j at R^j_± (only x_j moved).
    g_pm = sde.diffusion(t + h, torch.cat([base + shift, base - shift], dim=0))
    gp, gm = g_pm[: x.shape[0]], g_pm[x.shape[0]:]
    return (x + drift_part + 0.25 * (gp + gm + 2.0 * g0) * dW
            + 0.25 * (gp - gm) * (dW * dW - h) / sq)


class PlatenWeak2(Solver):
    """Platen's explicit weak order-2.0 scheme (Kloeden & Platen 1992, (15.1.3); additive (15.1.4)).

    Derivative-free, for general non-commutative matrix noise ``σ(x) ∈ R^{D×M}``:

    .. math::

        Y_{n+1} = Y_n + ½(a(Ῡ) + a) h
          + ¼ Σ_j [ (b^j(R^j_+) + b^j(R^j_-) + 2 b^j) ΔW^j
                    + Σ_{r≠j} (b^j(U^r_+) + b^j(U^r_-) − 2 b^j) ΔW^j ]
          + ¼ Σ_j [ (b^j(R^j_+) − b^j(R^j_-)) ((ΔW^j)² − h)
                    + Σ_{r≠j} (b^j(U^r_+) − b^j(U^r_-)) (ΔW^j ΔW^r + V_{r j}) ] h^{-1/2}

    with ``Ῡ = Y + a h + Σ_j b^j ΔW^j``, ``R^j_± = Y + a h ± b^j √h``, ``U^j_± = Y ± b^j √h`` and
    ``V`` from :func:`two_point_levy`. For time-dependent coefficients ``a(Ῡ)`` and ``b^j(R^j_±)``
    are evaluated at ``t + h`` (the supporting values that stand in for one step ahead), ``b`` and
    ``b^j(U^r_±)`` at ``t``: this supplies the ``½ h² ∂_t a`` and ``½ h ∂_t b^j ΔW^j`` terms of
    the order-2 Itô–Taylor expansion, without which the scheme is only weak order 1. Increments
    must match five Gaussian moments (Gaussian or three-point).

    Each noise kind takes the cheapest exact form of the scheme:

    * ADDITIVE: (15.1.4) with the trapezoidal ``½(b(t) + b(t + h)) ΔW`` (:func:`additive_step`);
      one diffusion evaluation more than Euler–Maruyama.
    * DIAGONAL and SCALAR: the ``U``-terms vanish — for diagonal noise ``b^j`` depends on ``x_j``
      only, which ``U^r_±`` (``r ≠ j``) leaves unchanged; scalar noise has no ``r ≠ j`` — and
      ``b^j(R^j_±)`` is read off one evaluation of ``σ`` at ``Y + a h ± σ √h``, so the step is
      the scalar scheme (15.1.1) componentwise: 3 diffusion evaluations of shape ``(P, D)``.
    * GENERAL and COVARIANCE (COVARIANCE through the symmetric root of ``Σ``): the full
      (15.1.3) with ``(P, D, M)`` matrices, ``4M + 1`` diffusion evaluations (``2M`` at
      ``R^j_±``, ``2M`` at ``U^r_±``, batched) and the two-point variables; for ``M = 1`` the
      ``U``-terms and ``V`` are skipped.

    References
    ----------
    E. Platen, "Derivative free numerical methods for stochastic differential equations", Lecture
    Notes in Control and Inform. Sci. 96 (1987). Kloeden & Platen (1992), §15.1.
    """

    name = "platen"
    strong_order = None
    weak_order = 2.0
    noise_kinds = frozenset(
        {NoiseKind.DIAGONAL, NoiseKind.SCALAR, NoiseKind.ADDITIVE, NoiseKind.GENERAL,
         NoiseKind.COVARIANCE}
    )
    min_matched_moments = 5
    reference = "Platen (1987); Kloeden & Platen (1992), (15.1.3) and (15.1.4)"
    references = (KLOEDEN_PLATEN_1992,)
    alternative = (
        "EulerMaruyama() (weak order 1; for SAMPLED noise), or give the SDE a factored diffusion "
        "(noise_kind='general')"
    )

    def step_memory(self, kind: NoiseKind, dim: int, noise_dim: int, itemsize: int) -> int:
        """GENERAL and COVARIANCE noise: the diffusion matrices at the ``2M`` points ``R^j_±`` and
        the ``2M`` points ``U^r_±``, ``2 × (2M, D, M)`` numbers per path (both alive at once):
        ``4 M² D`` numbers, 28 MB per path for the dropout factor of width 16 in float64."""
        if kind in (NoiseKind.GENERAL, NoiseKind.COVARIANCE) and noise_dim > 1:
            return 4 * noise_dim * noise_dim * dim * itemsize
        return 0

    def step(self, sde, t, x, h, dW, generator):
        if sde.noise_kind is NoiseKind.ADDITIVE:
            return additive_step(sde, t, x, h, dW)
        if sde.noise_kind in (NoiseKind.DIAGONAL, NoiseKind.SCALAR):
            return _componentwise_step(sde, t, x, h, dW)
        P, D = x.shape
        a0 = sde.drift(t, x)
        b0 = diffusion_matrix(sde, sde.diffusion(t, x), P)  # (P, D, M)
        noise = torch.einsum("pdm,pm->pd", b0, dW)
        upsilon = x + a0 * h + noise
        # a(t + h, Ῡ): evaluating at t would drop ½ h² ∂_t a (local weak error O(h²)).
        drift_part = 0.5 * (sde.drift(t + h, upsilon) + a0) * h
        M = b0.shape[-1]
        sq = math.sqrt(h)
        columns = b0.permute(2, 0, 1) * sq  # (M, P, D): b^j √h

        def matrices(s: float, points: Tensor) -> Tensor:
            # points (K, P, D) -> diffusion matrices (K, P, D, M) at time s, in bounded slices.
            K = points.shape[0]
            per_point = max(1, _BATCH_BUDGET // max(1, P * D * M))
            out = []
            for k0 in range(0, K, per_point):
                chunk = points[k0 : k0 + per_point].reshape(-1, D)
                g = sde.diffusion(s, chunk)
                out.append(diffusion_matrix(sde, g, chunk.shape[0]).reshape(-1, P, D, M))
            return torch.cat(out, dim=0)

        base = x + a0 * h
        # b^j(t + h, R^j_±) supplies ½ h ∂_t b^j; the U-differences cancel b at time t.
        R = matrices(t + h, torch.cat([base + columns, base - columns], dim=0))  # (2M, P, D, M)
        # b^j(R^j_±): column j of the matrix at point R^j_±.
        Rp = torch.diagonal(R[:M], dim1=0, dim2=3)  # (P, D, M)
        Rm = torch.diagonal(R[M:], dim1=0, dim2=3)
        first = torch.einsum("pdj,pj->pd", Rp + Rm + 2.0 * b0, dW)
        second = torch.einsum("pdj,pj->pd", Rp - Rm, dW * dW - h)
        if M == 1:  # no r ≠ j: the U-terms and the two-point variables do not enter
            return x + drift_part + 0.25 * first + 0.25 * second / sq
        U = matrices(t, torch.cat([x + columns, x - columns], dim=0))  # (2M, P, D, M)
        Up, Um = U[:M], U[M:]  # indexed [r, p, d, j]
        off = 1.0 - torch.eye(M, dtype=x.dtype, device=x.device)  # [r, j], zero for r == j

        first = first + torch.einsum("rpdj,rj,pj->pd", Up + Um - 2.0 * b0.unsqueeze(0), off, dW)
        V = two_point_levy(P, M, h, generator, x.dtype, x.device)  # V[p, r, j] = V_{r j}
        pair = (dW.unsqueeze(2) * dW.unsqueeze(1) + V) * off  # [p, r, j]
        second = second + torch.einsum("rpdj,prj->pd", Up - Um, pair)
        return x + drift_part + 0.25 * first + 0.25 * second / sq
