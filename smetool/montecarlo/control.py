"""Small-noise control variates: tangents along the noise-free path, and the CVs built from them.

An SME's fluctuations are small: over a fixed horizon ``θ_T − θ̄_T = O(√ε)`` where ``θ̄`` is the
noise-free path, so ``Var g(θ_T) = O(ε)``, while the weak errors to resolve are ``O(ε)`` (order
1) or ``O(ε²)`` (order 2). Two processes, driven by the same randomness as the path and
propagated by deterministic linear maps ``A_k`` (the Jacobians of the noise-free scheme along
``θ̄``), capture the fluctuation:

* the **martingale tangent** ``M_{k+1} = A_k M_k + m_k`` with the path's own noise increments
  ``m_k = x_{k+1} − E[x_{k+1} | x_k]`` (discrete: ``Φ(x_k, ω_k) − Φ̄(x_k)``; SDE step:
  ``σ(x_j) ΔW_j``): a martingale transform with deterministic coefficients, so ``E M = 0``;
* the **Gaussian tangent** ``δ_{k+1} = A_k δ_k + ξ_k`` with the noise evaluated on the noise-free
  path (``ξ_k = Φ(θ̄_k, ω_k) − Φ̄(θ̄_k)``, or ``σ(θ̄_j) ΔW_j``), whose covariance
  ``C_{k+1} = A_k C_k A_kᵀ + Cov ξ_k`` is exact.

For a test function ``g`` the control variates

``CV₁ = ∇g(θ̄_T)·M_T`` and ``CV₂ = ½ δ_Tᵀ ∇²g(θ̄_T) δ_T − ½ tr(∇²g(θ̄_T) C_T)``

have mean exactly zero whatever the quality of the linearisation, so ``mean(g − CV₁ − CV₂)`` is
unbiased; a poor linearisation only costs variance, which every run reports. :func:`weak_error`
subtracts ``β (CV₁ + CV₂)`` with the variance-minimising ``β`` fitted on the same samples (``1``
when the linearisation is exact; near ``0`` for a test function the tangent cannot follow, e.g.
the norm under tangent noise), at a bias ``O(1/N)`` against a standard error ``O(1/√N)``. ``M`` follows the
noise where it actually acts: on a problem whose step is affine in the state (least squares,
linear SDEs) ``θ − θ̄ = M`` exactly, and on the dropout SME it removes 10–10⁵ times more variance
than the first-order tangent ``δ`` alone (measured: ``docs/numerics.md``). Pitfall: the maps
``A_k`` must be deterministic — evaluated on ``θ̄``, never on the noisy path.

References
----------
N. J. Newton, "Variance reduction for simulated diffusions", SIAM J. Appl. Math. 54 (1994)
(small-noise expansions and martingale control variates). E. Fournié, J.-M. Lasry, N. Touzi,
"Monte Carlo methods for stochastic volatility models" (1997). P. Glasserman, *Monte Carlo Methods
in Financial Engineering*, Springer 2004, §4.1.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..checks import check_choice
from ..device import functorch_exclusive
from ..integrate import LinearTangent, as_solver
from ..noise import diffusion_matrix
from ..sde import SDE, NoiseFree, NoiseKind
from ..solvers import Solver

__all__ = [
    "VarianceReduction",
    "as_variance_reduction",
    "TangentPaths",
    "row_jacobian",
    "control_values",
    "linearize_sde",
    "DENSE_LIMIT",
]

DENSE_LIMIT = 2048
"""Largest dimension ``D`` for which the tangent's linear maps are formed as ``D × D`` matrices
(shared by every path); the quadratic control variate needs them."""


class VarianceReduction(enum.Enum):
    """Which control variates an estimate subtracts.

    ``NONE``: plain Monte Carlo. ``TANGENT``: ``CV₁ = ∇g(θ̄)·M``. ``QUADRATIC``: ``CV₁ + CV₂``
    (on the discrete side it needs the exact covariance of a step; without it that side uses
    ``CV₁`` alone).
    """

    NONE = "none"
    TANGENT = "tangent"
    QUADRATIC = "quadratic"


def as_variance_reduction(value: VarianceReduction | str) -> VarianceReduction:
    """A :class:`VarianceReduction` from itself or its name.

    Raises
    ------
    ValueError
        An unknown name (the message lists the valid ones).
    """
    return check_choice(VarianceReduction, value, "variance_reduction")


@dataclass(frozen=True)
class TangentPaths:
    """The noise-free path and the tangents at the save times.

    Attributes
    ----------
    mean : Tensor, (S, D)
        ``θ̄`` at the save times.
    martingale : Tensor, (S, P, D)
        ``M`` on every path (the linear control variate).
    delta : Tensor (S, P, D) or None
        ``δ`` on every path, with its exact ``covariance`` ``C = E δ δᵀ`` (S, D, D) (the quadratic
        control variate); ``None`` when only the linear one is used.
    covariance : Tensor (S, D, D) or None
    """

    mean: Tensor
    martingale: Tensor
    delta: Tensor | None = None
    covariance: Tensor | None = None

    def __post_init__(self) -> None:
        if (self.delta is None) != (self.covariance is None):
            raise ValueError("TangentPaths: `delta` and `covariance` come together (the quadratic "
                             "control variate needs both).")


def row_jacobian(fn: Callable[[Tensor], Tensor], point: Tensor) -> Tensor:
    """The Jacobian ``∂fn(point)`` ``(D, D)`` of a map applied row by row, ``(N, D) -> (N, D)``.

    By central differences on ``2D`` rows in one batched call, with the step
    ``ε^{1/3} max(1, ‖point‖_∞)`` (``ε`` the dtype's machine epsilon): relative accuracy ~1e-10
    in float64. The control variates need *a* deterministic matrix, not the exact Jacobian (a
    less accurate one only costs variance), and this is about ten times faster than forward mode
    (:func:`torch.func.jvp`) on the dropout SME's drift.
    """
    D = point.numel()
    step = torch.finfo(point.dtype).eps ** (1.0 / 3.0) * max(1.0, float(point.abs().max()))
    shift = step * torch.eye(D, dtype=point.dtype, device=point.device)
    rows = torch.cat([point.reshape(1, D) + shift, point.reshape(1, D) - shift])
    values = fn(rows)
    return ((values[:D] - values[D:]) / (2.0 * step)).transpose(0, 1)


_DERIVATIVES: OrderedDict[tuple, tuple[Any, tuple[Tensor, Tensor | None] | None]] = OrderedDict()
_DERIVATIVES_LOCK = threading.Lock()
_DERIVATIVE_ENTRIES = 256
"""Derivatives of test functions at noise-free points kept per process: every chunk of a
producer (and every chunk's antithetic twin) asks for the same ones."""


def _derivatives(g: Callable[[Tensor], Tensor], point: Tensor, quadratic: bool
                 ) -> tuple[Tensor, Tensor | None] | None:
    """``∇g`` and (with ``quadratic``) ``∇²g`` at one point, by autograd; ``None`` when ``g`` is
    not differentiable there (no control variate for it). Cached per process by the test
    function's identity and the point's bytes (the cache holds ``g``, so its id stays its own)."""
    key = (id(g), str(point.dtype), str(point.device), point.detach().cpu().numpy().tobytes(),
           quadratic)
    with _DERIVATIVES_LOCK:
        found = _DERIVATIVES.get(key)
        if found is not None:
            _DERIVATIVES.move_to_end(key)
            return found[1]
    value = _compute_derivatives(g, point, quadratic)
    with _DERIVATIVES_LOCK:
        _DERIVATIVES[key] = (g, value)
        while len(_DERIVATIVES) > _DERIVATIVE_ENTRIES:
            _DERIVATIVES.popitem(last=False)
    return value


def _compute_derivatives(g: Callable[[Tensor], Tensor], point: Tensor, quadratic: bool
                         ) -> tuple[Tensor, Tensor | None] | None:
    def scalar(y: Tensor) -> Tensor:
        return g(y.unsqueeze(0))[0]

    with torch.enable_grad():
        y = point.detach().clone().requires_grad_(True)
        try:
            value = scalar(y)
            if not value.requires_grad:
                return None
            (grad,) = torch.autograd.grad(value, y, create_graph=quadratic)
        except RuntimeError:
            return None
        hess = None
        if quadratic:
            hess = _hessian(scalar, y, grad)
    if hess is not None and not bool(torch.isfinite(hess).all()):
        hess = None
    return grad.detach(), None if hess is None else hess.detach()


def _hessian(scalar: Callable[[Tensor], Tensor], y: Tensor, grad: Tensor) -> Tensor:
    """``∇²g(y)`` ``(D, D)``: one vectorised :func:`torch.func.hessian` call, or, for a ``g`` that
    ``torch.func`` cannot transform (e.g. one with in-place or data-dependent Python code), one
    backward pass per row of ``grad`` (computed with ``create_graph=True``).

    The transform holds :func:`~smetool.device.functorch_exclusive`'s lock (threaded executors)."""
    try:
        return functorch_exclusive(torch.func.hessian(scalar))(y.detach())
    except Exception:  # noqa: BLE001 — any failure of the transform: fall back to plain autograd
        pass
    rows = []
    for i in range(y.numel()):
        row = None
        if grad.requires_grad:  # else g is linear: a zero Hessian
            (row,) = torch.autograd.grad(grad[i], y, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(y) if row is None else row)
    return torch.stack(rows)


def control_values(test_functions: Mapping[str, Callable[[Tensor], Tensor]],
                   tangent: TangentPaths) -> Tensor:
    """``CV₁ (+ CV₂ when δ and its covariance are given)`` per test function, save time, path.

    Returns
    -------
    Tensor, (K, S, P), float64
        Zero rows for test functions that are not differentiable at ``θ̄``.
    """
    S, P, D = tangent.martingale.shape
    out = torch.zeros(len(test_functions), S, P, dtype=torch.float64,
                      device=tangent.martingale.device)
    quadratic = tangent.delta is not None and tangent.covariance is not None
    for k, g in enumerate(test_functions.values()):
        for s in range(S):
            found = _derivatives(g, tangent.mean[s], quadratic)
            if found is None:
                continue
            grad, hess = found
            cv = tangent.martingale[s] @ grad
            if hess is not None and tangent.delta is not None and tangent.covariance is not None:
                delta = tangent.delta[s]
                cv = cv + 0.5 * ((delta @ hess) * delta).sum(dim=1) \
                    - 0.5 * (hess * tangent.covariance[s]).sum()
            out[k, s] = cv.to(torch.float64)
    return out


class _DriftAt:
    """``x ↦ b(t, x)`` at a fixed time (a map for :func:`row_jacobian`)."""

    def __init__(self, sde: SDE, t: float):
        self.sde, self.t = sde, t

    def __call__(self, x: Tensor) -> Tensor:
        return self.sde.drift(self.t, x)


def _noise_free_path(sde: SDE, solver: Solver, x0: Tensor, t0: float, dt: float, n: int) -> Tensor:
    """``θ̄_0 … θ̄_n`` ``(n + 1, D)``: the scheme on the drift alone, one path."""
    flow = NoiseFree(sde)
    x = x0.reshape(1, -1)
    zero = x.new_zeros(1, 1)
    path = [x[0]]
    for j in range(n):
        x = solver.step(flow, t0 + j * dt, x, dt, zero, None)
        path.append(x[0])
    return torch.stack(path)


_DRIFT_LINEARIZATIONS: OrderedDict[tuple, tuple[Any, Tensor, Tensor]] = OrderedDict()
_DRIFT_ENTRIES = 4
"""Noise-free paths and drift Jacobians kept per process, by the SDE whose drift they are of
(an SME and its hard controls with a scaled or diagonal noise share one drift)."""


def _drift_linearization(sde: SDE, solver: Solver, x0: Tensor, t0: float, dt: float,
                         n: int) -> tuple[Tensor, Tensor]:
    """``θ̄`` ``(n + 1, D)`` and ``∂b(t_j, θ̄_j)`` ``(n, D, D)``, once per drift and grid."""
    source = getattr(sde, "drift_source", sde)
    key = (id(source), type(solver).__name__, float(t0), float(dt), int(n), str(x0.dtype),
           str(x0.device), x0.detach().cpu().numpy().tobytes())
    with _DERIVATIVES_LOCK:
        found = _DRIFT_LINEARIZATIONS.get(key)
    if found is not None:
        return found[1], found[2]
    mean = _noise_free_path(sde, solver, x0, t0, dt, n)
    J = torch.stack([row_jacobian(_DriftAt(sde, t0 + j * dt), mean[j]) for j in range(n)])
    with _DERIVATIVES_LOCK:
        _DRIFT_LINEARIZATIONS[key] = (source, mean, J)  # holding the source keeps its id its own
        while len(_DRIFT_LINEARIZATIONS) > _DRIFT_ENTRIES:
            _DRIFT_LINEARIZATIONS.popitem(last=False)
    return mean, J


def linearize_sde(sde: SDE, method: Solver | str | None, x0: Tensor, t0: float, dt: float,
                  n: int, *, quadratic: bool, levels: int | None = None
                  ) -> Any:
    """The noise-free path of an SDE scheme and the linear maps of its tangent, precomputed.

    Parameters
    ----------
    sde : SDE
        Brownian noise (not SAMPLED).
    method : Solver or str
        The scheme; the noise-free path is this scheme on the drift alone.
    x0 : Tensor, (D,)
    t0, dt : float
    n : int
        Steps.
    quadratic : bool
        Also ``B_j = σ(t_j, θ̄_j)`` for the Gaussian tangent ``δ`` and its covariance recursion
        ``C_{j+1} = A_j C_j A_jᵀ + dt B_j B_jᵀ``.
    levels : int, optional
        Also the maps of the coarser grids ``2 dt, 4 dt, …`` (``levels`` grids in all, the
        fine one first; :func:`~smetool.integrate.solve_coupled`): each coarse step ``k`` of
        size ``2^l dt`` uses ``A = I + 2^l dt ∂b`` and ``B = σ`` at the *fine* noise-free path's
        point at its start, so the drift's Jacobian (``2D`` drift evaluations per point) is
        computed once per fine step for every grid. Any deterministic matrices keep the control
        variates' means at zero; these differ from the coarse path's own by ``O(dt²)``, which
        costs no measurable variance.

    Returns
    -------
    mean : Tensor, (n + 1, D)
        ``θ̄``.
    maps : LinearTangent
        ``A_j = I + dt ∂b(t_j, θ̄_j)`` ``(n, D, D)`` and, with ``quadratic``, ``B_j``
        ``(n, D, M)``.
    covariance : Tensor (n + 1, D, D) or None
        ``C_j = E δ_j δ_jᵀ`` (with ``quadratic``).

    With ``levels``, a tuple of such triples, one per grid (the coarse ones' ``mean`` is the
    fine path at their grid points), each covariance ``(1, D, D)``: only ``C_n`` at the end of
    the grid is kept (for ``D`` in the hundreds the whole recursion is gigabytes).

    Raises
    ------
    ValueError
        SAMPLED noise (no increments to share), ``D > DENSE_LIMIT``, or ``n`` not a multiple of
        ``2^{levels−1}``.
    """
    if sde.noise_kind is NoiseKind.SAMPLED:
        raise ValueError(f"{sde!r}: SAMPLED noise has no Brownian increments for a tangent.")
    D = x0.numel()
    if D > DENSE_LIMIT:
        raise ValueError(f"the tangent's dense maps need D ≤ {DENSE_LIMIT}; got D = {D}.")
    count = 1 if levels is None else int(levels)
    if count < 1 or n % 2 ** (count - 1):
        raise ValueError(f"`n` ({n}) must be a multiple of 2^(levels − 1) = {2 ** (count - 1)}.")
    solver = as_solver(method)
    mean, J = _drift_linearization(sde, solver, x0, t0, dt, n)
    eye = torch.eye(D, dtype=x0.dtype, device=x0.device)
    B = None
    if quadratic:
        B = torch.stack([diffusion_matrix(sde, sde.diffusion(t0 + j * dt,
                                                             mean[j].reshape(1, D)), 1)[0]
                         for j in range(n)])
    out: list[tuple[Tensor, LinearTangent, Tensor | None]] = []
    for level in range(count):
        stride = 2**level
        h = dt * stride
        A = eye + h * J[::stride]
        if B is None:
            out.append((mean[::stride], LinearTangent(A), None))
            continue
        Bl = B[::stride]
        C = torch.zeros(D, D, dtype=x0.dtype, device=x0.device)
        covs = [C]
        for k in range(A.shape[0]):
            C = A[k] @ C @ A[k].T + h * Bl[k] @ Bl[k].T
            if levels is None:
                covs.append(C)
        out.append((mean[::stride], LinearTangent(A, Bl),
                    torch.stack(covs) if levels is None else C.unsqueeze(0)))
    return out[0] if levels is None else tuple(out)
