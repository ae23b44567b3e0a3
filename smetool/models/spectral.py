"""Spectra and traces of symmetric operators known only through batched matrix–vector products.

A network's Hessian ``H`` (``D × D``, one per path) is available as Hessian–vector products (HVPs,
:func:`smetool.models.net_dropout.hvp`); forming it costs ``D`` of them and ``O(D²)`` memory per
path. This module works with the products alone, batched over paths: an operator is a callable
``matvec(V) -> H V`` on blocks ``V (P, s, D)`` (``s`` vectors per path, one HVP each).

* :func:`lanczos_top` — the ``k`` largest eigenpairs by the Lanczos iteration with full
  reorthogonalization, all paths at once (one block HVP per iteration); the residual bound
  ``|β_m s_{m,i}|`` of each Ritz pair says when it has converged.
* :func:`hutchpp_trace` — Hutch++ (Meyer, Musco, Musco & Woodruff 2021): the trace on a random
  sketch of the range of ``H`` exactly, Hutchinson's estimator on the rest, with its standard error.
* :func:`dense_hessian` — the full Hessian of a per-path scalar function, by forward-over-reverse
  :func:`torch.func.hessian` under :func:`torch.func.vmap`, for ``D`` small enough to store it.

References
----------
C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear differential
and integral operators", J. Res. Nat. Bur. Standards 45 (1950); B. N. Parlett, *The Symmetric
Eigenvalue Problem*, SIAM (1998), ch. 13 (full reorthogonalization, residual bounds).
M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
smoothing splines", Comm. Statist. Simulation Comput. 19 (1990).
R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff, "Hutch++: optimal stochastic trace estimation",
SOSA 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import hessian, vmap

from ..checks import check_positive, check_positive_int

__all__ = ["Matvec", "LanczosResult", "lanczos_top", "TraceEstimate", "hutchpp_trace",
           "dense_hessian", "dense_matvec"]

Matvec = Callable[[Tensor], Tensor]
"""A batched symmetric operator: ``V (P, s, D) -> H V (P, s, D)``."""


def dense_matvec(H: Tensor) -> Matvec:
    """The operator of explicit matrices ``H (P, D, D)`` (for tests and small ``D``)."""
    return lambda V: torch.einsum("pde,pse->psd", H, V)


def _orthonormal_start(P: int, D: int, generator: torch.Generator, dtype, device) -> Tensor:
    v = torch.randn(P, D, generator=generator, dtype=dtype, device=generator.device).to(device)
    return v / v.norm(dim=1, keepdim=True)


@dataclass(frozen=True)
class LanczosResult:
    """The largest eigenpairs of a batch of symmetric operators.

    Attributes
    ----------
    eigenvalues : Tensor, (P, k)
        Ritz values, decreasing.
    eigenvectors : Tensor, (P, k, D)
        Unit Ritz vectors.
    residuals : Tensor, (P, k)
        ``‖H x − θ x‖`` of each Ritz pair (the bound ``|β_m s_{m,i}|``).
    iterations : int
        Lanczos steps taken (operator applications per path).
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    iterations: int


def lanczos_top(matvec: Matvec, P: int, D: int, k: int, *, generator: torch.Generator,
                tol: float = 1e-8, max_iter: int | None = None, dtype: torch.dtype = torch.float64,
                device: torch.device | str | None = None) -> LanczosResult:
    """The ``k`` largest eigenpairs of symmetric operators by Lanczos with full reorthogonalization.

    Every path runs its own Krylov space ``span{q, Hq, H²q, …}`` from a random start (drawn from
    ``generator``); one call of ``matvec`` on a ``(P, 1, D)`` block advances all of them. Each
    new vector is orthogonalized twice against all previous ones (classical Gram–Schmidt twice:
    no loss of orthogonality, so no spurious copies of converged eigenvalues). When a path's
    Krylov space becomes invariant (``β = 0``), it continues from a fresh random vector orthogonal
    to the basis. Iterations stop once every path's ``k`` Ritz pairs have residual
    ``≤ tol · max|θ|``, or at ``max_iter`` (default ``D``, where the result is exact up to
    rounding).

    Parameters
    ----------
    matvec : callable
        ``V (P, s, D) -> H V``, ``H`` symmetric.
    P, D : int
        Paths and dimension.
    k : int
        Eigenpairs wanted, ``1 ≤ k ≤ D``.
    generator : torch.Generator
        For the start vectors.
    tol : float
        Relative residual at which a Ritz pair counts as converged.
    max_iter : int, optional
        At most this many iterations (``≥ k``, ``≤ D``).
    dtype, device
        Of the vectors.

    Returns
    -------
    LanczosResult

    Raises
    ------
    ValueError
        ``k`` or ``max_iter`` out of range, or ``matvec`` returning the wrong shape.

    References
    ----------
    C. Lanczos (1950); B. N. Parlett, *The Symmetric Eigenvalue Problem* (1998), ch. 13.
    """
    P, D = check_positive_int(P, "P"), check_positive_int(D, "D")
    k = check_positive_int(k, "k")
    if k > D:
        raise ValueError(f"`k` must be at most D = {D}; got {k}.")
    m_max = D if max_iter is None else check_positive_int(max_iter, "max_iter")
    if not k <= m_max <= D:
        raise ValueError(f"`max_iter` must be in [k, D] = [{k}, {D}]; got {max_iter}.")
    check_positive(tol, "tol")
    device = generator.device if device is None else device
    Q = torch.zeros(P, m_max, D, dtype=dtype, device=device)
    alpha = torch.zeros(P, m_max, dtype=dtype, device=device)
    beta = torch.zeros(P, m_max, dtype=dtype, device=device)
    q = _orthonormal_start(P, D, generator, dtype, device)
    scale = torch.zeros(P, dtype=dtype, device=device)
    m = 0
    while True:
        Q[:, m] = q
        w = matvec(q.unsqueeze(1))
        if w.shape != (P, 1, D):
            raise ValueError(f"`matvec` must map (P, s, D) to the same shape; got {tuple(w.shape)} "
                             f"for {(P, 1, D)}.")
        w = w[:, 0]
        alpha[:, m] = (q * w).sum(dim=1)
        scale = torch.maximum(scale, w.norm(dim=1))
        basis = Q[:, : m + 1]
        for _ in range(2):  # full reorthogonalization, twice
            w = w - torch.einsum("pj,pjd->pd", torch.einsum("pjd,pd->pj", basis, w), basis)
        b = w.norm(dim=1)
        breakdown = b <= 1e-12 * scale.clamp_min(torch.finfo(dtype).tiny)
        m += 1
        if m == m_max or m % 4 == 0 or m == k:
            T = torch.diag_embed(alpha[:, :m]) + torch.diag_embed(beta[:, : m - 1], 1) \
                + torch.diag_embed(beta[:, : m - 1], -1)
            theta, S = torch.linalg.eigh(T)
            theta, S = theta.flip(-1)[:, :k], S.flip(-1)[:, :, :k]
            resid = (b.unsqueeze(1) * S[:, -1, :]).abs()
            top = theta.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
            # an exhausted (invariant) Krylov space has zero residuals but may miss eigenvalues
            # above its Ritz values: such a path must go on from a fresh direction
            done = (resid <= tol * top).all(dim=1) & ~breakdown
            if m >= k and (m == m_max or bool(done.all())):
                vecs = torch.einsum("pmk,pmd->pkd", S, Q[:, :m])
                return LanczosResult(theta, vecs, resid, m)
        beta[:, m - 1] = torch.where(breakdown, torch.zeros_like(b), b)
        if bool(breakdown.any()):
            # an invariant subspace: restart those paths orthogonally to their basis (β = 0 keeps
            # T block-diagonal, so its eigenvalues stay eigenvalues of H)
            fresh = _orthonormal_start(P, D, generator, dtype, device)
            for _ in range(2):
                fresh = fresh - torch.einsum(
                    "pj,pjd->pd", torch.einsum("pjd,pd->pj", Q[:, :m], fresh), Q[:, :m])
            fresh = fresh / fresh.norm(dim=1, keepdim=True)
            w = torch.where(breakdown.unsqueeze(1), fresh, w / torch.where(
                breakdown, torch.ones_like(b), b).unsqueeze(1))
            q = w
        else:
            q = w / b.unsqueeze(1)


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate per path with its standard error.

    Attributes
    ----------
    trace : Tensor, (P,)
    stderr : Tensor, (P,)
        Standard error of the stochastic part (0 where it is exact).
    matvecs : int
        Operator applications per path.
    """

    trace: Tensor
    stderr: Tensor
    matvecs: int


def _rademacher(P: int, s: int, D: int, generator: torch.Generator, dtype, device) -> Tensor:
    bits = torch.randint(0, 2, (P, s, D), generator=generator, device=generator.device)
    return (2.0 * bits - 1.0).to(dtype=dtype, device=device)


def hutchpp_trace(matvec: Matvec, P: int, D: int, *, generator: torch.Generator,
                  n_sketch: int = 20, n_probes: int = 20, dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None) -> TraceEstimate:
    """Hutch++: ``tr H`` from ``2 n_sketch + n_probes`` products, with a standard error.

    With Rademacher blocks ``S (D × n_sketch)`` and ``G (D × n_probes)``: ``Q = orth(H S)``, and

    ``tr H ≈ tr(Qᵀ H Q) + (1/n_probes) Σ_j g_jᵀ (I − QQᵀ) H (I − QQᵀ) g_j``.

    The first term is exact on the sketched range (where the large eigenvalues live); the
    second is Hutchinson's unbiased estimator on the deflated rest, whose standard error is
    reported (its probe values' standard deviation over ``√n_probes``).

    Parameters
    ----------
    matvec : callable
        ``V (P, s, D) -> H V``, ``H`` symmetric.
    P, D : int
    generator : torch.Generator
    n_sketch, n_probes : int
        Sketch width (≥ 1, ≤ D) and Hutchinson probes (≥ 2).
    dtype, device

    Returns
    -------
    TraceEstimate

    References
    ----------
    R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff, SOSA 2021; M. F. Hutchinson (1990).
    """
    P, D = check_positive_int(P, "P"), check_positive_int(D, "D")
    n_sketch = check_positive_int(n_sketch, "n_sketch")
    if n_sketch > D:
        raise ValueError(f"`n_sketch` must be at most D = {D}; got {n_sketch}.")
    n_probes = check_positive_int(n_probes, "n_probes")
    if n_probes < 2:
        raise ValueError(f"`n_probes` must be at least 2 (a standard error); got {n_probes}.")
    device = generator.device if device is None else device
    S = _rademacher(P, n_sketch, D, generator, dtype, device)
    Q = torch.linalg.qr(matvec(S).transpose(1, 2)).Q  # (P, D, s)
    exact = torch.einsum("pds,psd->p", Q, matvec(Q.transpose(1, 2)))
    G = _rademacher(P, n_probes, D, generator, dtype, device)
    G = G - torch.einsum("pds,pjs->pjd", Q, torch.einsum("pds,pjd->pjs", Q, G))
    HG = matvec(G)
    HG = HG - torch.einsum("pds,pjs->pjd", Q, torch.einsum("pds,pjd->pjs", Q, HG))
    values = (G * HG).sum(dim=2)  # (P, n_probes)
    return TraceEstimate(trace=exact + values.mean(dim=1),
                         stderr=values.std(dim=1) / math.sqrt(n_probes),
                         matvecs=2 * n_sketch + n_probes)


def dense_hessian(fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """``∇²fn(θ_p)`` for every path, ``(P, D, D)``, ``fn`` a scalar function of one path's ``θ (D,)``.

    Forward-over-reverse (:func:`torch.func.hessian`) under :func:`torch.func.vmap` over paths:
    ``D`` forward-mode directions through one reverse pass, memory ``O(P D²)``. Symmetrized
    (the two triangles round differently).
    """
    if theta.ndim != 2:
        raise ValueError(f"`theta` must have shape (P, D); got {tuple(theta.shape)}.")
    H = vmap(hessian(fn))(theta)
    return 0.5 * (H + H.transpose(1, 2))
