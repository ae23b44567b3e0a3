"""Diffusion kinds as operators: ``b(x) dW``, the matrix ``b(x)`` and PSD factorisation.

A solver never branches on the noise kind itself: it asks this module for the product of the
diffusion with a Brownian increment (:func:`apply_diffusion`) or for the full matrix
``(P, D, M)`` (:func:`diffusion_matrix`). The cost of each kind per path-step is

* DIAGONAL, SCALAR: ``O(D)``; ADDITIVE and GENERAL: ``O(D M)``;
* COVARIANCE: ``O(D³)`` for the factorisation of ``Σ`` (an eigendecomposition);
* SAMPLED: whatever the user's sampler costs; no ``D × D`` matrix is formed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .sde import SDE, NoiseKind

__all__ = ["psd_factor", "brownian_dim", "diffusion_matrix", "apply_diffusion", "check_diffusion"]


class NotPSDError(ValueError):
    """A covariance that is clearly indefinite (beyond round-off) was passed where Σ must be PSD."""


def psd_factor(sigma: Tensor, *, rtol: float | None = None, atol: float = 0.0) -> Tensor:
    """Symmetric square root ``Σ^{1/2}`` of a batch of PSD matrices.

    Eigenvalues in ``[-tol, 0)`` with ``tol = rtol · max(λ_max, 0) + atol`` are round-off and set
    to zero; a more negative eigenvalue means ``Σ`` is not PSD and is refused. The symmetric root
    (rather than Cholesky) is used because it exists for singular ``Σ`` and is a smooth function
    of ``Σ`` where ``Σ`` is positive definite, which weak order-2 schemes need when they evaluate
    the diffusion at perturbed states.

    Parameters
    ----------
    sigma : Tensor, (..., D, D)
        Symmetric positive semi-definite matrices.
    rtol : float, optional
        Tolerance for negative eigenvalues relative to the largest one. Default
        ``max(1e-8, 10 · D · eps)`` with ``eps`` the machine epsilon of ``sigma``'s dtype: the
        eigenvalues of a singular float32 ``Σ`` come out as small as ``−5e-7 λ_max`` by round-off
        alone, which a fixed ``1e-8`` would refuse.
    atol : float
        Absolute tolerance for negative eigenvalues.

    Returns
    -------
    Tensor, (..., D, D)
        ``F`` with ``F Fᵀ = Σ`` (and ``F = Fᵀ``). Differentiable with the derivative of the
        matrix square root, which stays finite where eigenvalues repeat (differentiating through
        ``eigh`` there gives NaN); second derivatives raise ``RuntimeError``.

    Raises
    ------
    ValueError
        If ``sigma`` is not square or not symmetric, or has an eigenvalue below ``-tol``; the
        message names the worst matrix in the batch and its most negative eigenvalue.
    """
    if sigma.ndim < 2 or sigma.shape[-1] != sigma.shape[-2]:
        raise ValueError(f"`sigma` must have shape (..., D, D); got {tuple(sigma.shape)}.")
    scale = sigma.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(sigma.dtype).tiny)
    asym = ((sigma - sigma.transpose(-1, -2)).abs() / scale).amax()
    if asym > 1e3 * torch.finfo(sigma.dtype).eps:
        raise ValueError(
            f"`sigma` must be symmetric; got a relative asymmetry of {float(asym):.3g}."
        )
    sym = 0.5 * (sigma + sigma.transpose(-1, -2))
    evals, evecs = torch.linalg.eigh(sym)
    if rtol is None:
        rtol = max(1e-8, 10.0 * sigma.shape[-1] * torch.finfo(sigma.dtype).eps)
    tol = rtol * evals[..., -1:].clamp_min(0.0) + atol
    bad = evals[..., :1] < -tol
    if bool(bad.any()):
        worst = evals[..., 0].flatten().argmin()
        raise NotPSDError(
            "`sigma` must be positive semi-definite; matrix "
            f"{int(worst)} of the batch has eigenvalue {float(evals[..., 0].flatten()[worst]):.3g} "
            f"(largest {float(evals[..., -1].flatten()[worst]):.3g}, tolerance rtol={rtol:g})."
        )
    root = evals.clamp_min(0.0).sqrt()
    if torch.is_grad_enabled() and sym.requires_grad:
        return _SymmetricRoot.apply(sym, evecs.detach(), root.detach())
    return (evecs * root.unsqueeze(-2)) @ evecs.transpose(-1, -2)


class _SymmetricRoot(torch.autograd.Function):
    """``F = U diag(r) Uᵀ`` with the derivative of the matrix square root, which exists wherever
    ``Σ`` is positive definite — also where eigenvalues repeat (``Σ = s² I``), where
    differentiating through ``eigh`` divides by ``λ_i − λ_j = 0`` and returns NaN.

    ``F dF + dF F = dΣ`` gives, in the eigenbasis, ``(Uᵀ dF U)_{ij} = (Uᵀ dΣ U)_{ij}/(r_i + r_j)``
    (a Daleckii–Krein formula; N. J. Higham, *Functions of Matrices*, SIAM 2008, chapters 3
    and 6), and the adjoint is the same division applied to ``Uᵀ Ḡ U``. Where ``r_i + r_j = 0``
    (a null space of a singular ``Σ``) the root is not differentiable; that entry of the gradient
    is set to 0, the convention of ``abs`` at 0. The backward treats ``U`` and ``r`` as
    constants, which is exact for first derivatives only, so a second derivative
    (``create_graph=True``) is refused rather than silently wrong.
    """

    @staticmethod
    def forward(ctx, sym, evecs, root):
        ctx.save_for_backward(evecs, root)
        return (evecs * root.unsqueeze(-2)) @ evecs.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph=True: a higher derivative is being built
            raise RuntimeError(
                "psd_factor supports first derivatives only; got a backward pass with "
                "create_graph=True through the square root of a covariance. Give the SDE a "
                "factored diffusion (noise_kind='general') to take higher derivatives."
            )
        evecs, root = ctx.saved_tensors
        inner = evecs.transpose(-1, -2) @ grad @ evecs
        denom = root.unsqueeze(-1) + root.unsqueeze(-2)
        scaled = torch.where(denom > 0, inner / torch.where(denom > 0, denom, 1.0), 0.0)
        out = evecs @ scaled @ evecs.transpose(-1, -2)
        # Σ enters symmetrised, so its gradient is the symmetric part.
        return 0.5 * (out + out.transpose(-1, -2)), None, None


def brownian_dim(sde: SDE, g: Tensor, state_dim: int) -> int | None:
    """The Brownian dimension ``M`` of ``sde`` given one evaluation ``g`` of its diffusion."""
    kind = sde.noise_kind
    if kind in (NoiseKind.DIAGONAL, NoiseKind.COVARIANCE):
        return state_dim
    if kind is NoiseKind.SCALAR:
        return 1
    if kind in (NoiseKind.GENERAL, NoiseKind.ADDITIVE):
        return int(g.shape[-1])
    return None


def check_diffusion(sde: SDE, g: Tensor, x: Tensor) -> None:
    """Validate one evaluation ``g = sde.diffusion(t, x)`` against the declared noise kind.

    Raises
    ------
    ValueError
        With the expected and received shapes.
    """
    P, D = x.shape
    kind = sde.noise_kind
    if kind in (NoiseKind.DIAGONAL, NoiseKind.SCALAR):
        expected: tuple = (P, D)
        ok = tuple(g.shape) == expected
    elif kind is NoiseKind.COVARIANCE:
        expected = (P, D, D)
        ok = tuple(g.shape) == expected
    elif kind is NoiseKind.ADDITIVE:
        expected = (D, "M")
        ok = (g.ndim == 2 and g.shape[0] == D) or (g.ndim == 3 and tuple(g.shape[:2]) == (P, D))
    else:
        expected = (P, D, "M")
        ok = g.ndim == 3 and tuple(g.shape[:2]) == (P, D)
    if ok and kind in (NoiseKind.GENERAL, NoiseKind.ADDITIVE) and sde.noise_dim is not None:
        ok = g.shape[-1] == sde.noise_dim
        expected = expected[:-1] + (sde.noise_dim,)
    if not ok:
        shape = "(" + ", ".join(str(s) for s in expected) + ")"
        raise ValueError(
            f"{sde!r}: diffusion(t, x) must have shape {shape} for noise_kind="
            f"{kind.value!r} with x of shape {tuple(x.shape)}; got {tuple(g.shape)}."
        )
    if g.dtype != x.dtype or g.device != x.device:
        raise ValueError(
            f"{sde!r}: diffusion(t, x) must have the dtype and device of x ({x.dtype}, "
            f"{x.device}); got ({g.dtype}, {g.device})."
        )


def diffusion_matrix(sde: SDE, g: Tensor, batch: int) -> Tensor:
    """The diffusion as a batch of matrices ``(P, D, M)`` from one evaluation ``g``."""
    kind = sde.noise_kind
    if kind is NoiseKind.DIAGONAL:
        return torch.diag_embed(g)
    if kind is NoiseKind.SCALAR:
        return g.unsqueeze(-1)
    if kind is NoiseKind.COVARIANCE:
        return psd_factor(g)
    if kind is NoiseKind.ADDITIVE and g.ndim == 2:
        return g.expand(batch, *g.shape)
    if kind in (NoiseKind.GENERAL, NoiseKind.ADDITIVE):
        return g
    raise ValueError(f"noise_kind={kind.value!r} has no diffusion matrix; it draws its own noise.")


def apply_diffusion(sde: SDE, g: Tensor, dW: Tensor) -> Tensor:
    """``b(x) dW`` for one evaluation ``g`` of the diffusion and increments ``dW (P, M)``."""
    kind = sde.noise_kind
    if kind in (NoiseKind.DIAGONAL, NoiseKind.SCALAR):
        return g * dW
    if kind is NoiseKind.ADDITIVE and g.ndim == 2:
        return dW @ g.transpose(0, 1)
    if kind is NoiseKind.COVARIANCE:
        g = psd_factor(g)
    return torch.einsum("pdm,pm->pd", g, dW)
