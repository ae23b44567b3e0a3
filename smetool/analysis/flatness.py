"""Flatness of a loss landscape: Hessian spectrum, Hessian flatness and interval flatness.

Two directional measures are used by the variance–flatness analyses of dropout:

* **Hessian flatness** along a unit direction ``u``: ``F^H_u = uᵀ H u`` (a curvature: *larger* means
  *sharper*);
* **interval flatness** along ``u`` (Feng & Tu 2021): the width ``F_u = s_+ − s_−`` of the interval
  of ``s`` around 0 on which ``L(θ + s u) ≤ c · L(θ)`` (``c = 2`` by default), where ``s_±``
  are the first crossings of the level on each side (*larger* means *flatter*).

References
----------
Y. Feng, Y. Tu, "The inverse variance–flatness relation in stochastic gradient descent is critical
for finding flat minima", PNAS 118(9), 2021 (interval flatness, level ``2 L``).
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024 (interval flatness and Hessian flatness for dropout).
Z. Zhang, H. Zhou, Z.-Q. J. Xu, "A variance principle explains why dropout finds flatter minima",
arXiv:2111.01022, 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "HessianSpectrum",
    "hessian_spectrum",
    "hessian_flatness",
    "IntervalFlatness",
    "interval_flatness",
    "UnboundedIntervalError",
    "normalize_directions",
]

LossFn = Callable[[Tensor], Tensor]
"""A batched loss: parameter vectors ``(N, D) -> (N,)``."""


class UnboundedIntervalError(ValueError):
    """The loss stays below the level ``c · L(θ)`` along a direction up to ``max_distance``."""


@dataclass(frozen=True)
class HessianSpectrum:
    """Trace and leading eigenvalues of a batch of Hessians.

    Attributes
    ----------
    trace : Tensor, (P,)
    top_eigenvalues : Tensor, (P, k)
        Largest eigenvalues, in decreasing order.
    """

    trace: Tensor
    top_eigenvalues: Tensor

    def to_dict(self) -> dict:
        return {"trace": self.trace.tolist(), "top_eigenvalues": self.top_eigenvalues.tolist()}

    def __repr__(self) -> str:
        return (
            f"HessianSpectrum(paths={self.trace.shape[0]}, "
            f"trace mean={float(self.trace.mean()):.4g}, "
            f"λ_max mean={float(self.top_eigenvalues[:, 0].mean()):.4g})"
        )


def _check_square(name: str, M: Tensor) -> None:
    if M.ndim != 3 or M.shape[1] != M.shape[2]:
        raise ValueError(f"`{name}` must have shape (P, D, D); got {tuple(M.shape)}.")


def hessian_spectrum(H: Tensor, k: int = 5) -> HessianSpectrum:
    """Trace and the ``k`` largest eigenvalues of symmetric matrices ``H (P, D, D)``.

    Parameters
    ----------
    H : Tensor, (P, D, D)
        Symmetric (e.g. from :meth:`~smetool.models.landscape.Landscape.hessian_matrix`).
    k : int
        Number of eigenvalues, ``1 ≤ k ≤ D``.

    Returns
    -------
    HessianSpectrum

    Raises
    ------
    ValueError
        If ``H`` is not a batch of square matrices or ``k`` is out of range.
    """
    _check_square("H", H)
    D = H.shape[1]
    if int(k) != k or not 1 <= k <= D:
        raise ValueError(f"`k` must be an integer in [1, {D}]; got {k!r}.")
    sym = 0.5 * (H + H.transpose(1, 2))
    evals = torch.linalg.eigvalsh(sym)
    return HessianSpectrum(
        trace=torch.diagonal(H, dim1=1, dim2=2).sum(dim=1),
        top_eigenvalues=evals.flip(-1)[:, : int(k)],
    )


def normalize_directions(U: Tensor, P: int, D: int) -> Tensor:
    """Broadcast directions to ``(P, K, D)`` and scale each to unit Euclidean length.

    Parameters
    ----------
    U : Tensor, (D,), (K, D) or (P, K, D)
    P, D : int
        Batch size and dimension the directions must match.

    Raises
    ------
    ValueError
        On a shape mismatch or a zero direction.
    """
    if U.ndim == 1:
        U = U.unsqueeze(0)
    if U.ndim == 2:
        U = U.unsqueeze(0).expand(P, -1, -1)
    if U.ndim != 3 or U.shape[0] != P or U.shape[2] != D:
        raise ValueError(
            f"`directions` must have shape (D,), (K, D) or (P, K, D) with P={P}, D={D}; "
            f"got {tuple(U.shape)}."
        )
    norms = U.norm(dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("`directions` must be non-zero vectors; got a zero direction.")
    return U / norms


def hessian_flatness(H: Tensor, directions: Tensor) -> Tensor:
    """Hessian flatness ``uᵀ H u`` along unit directions.

    Parameters
    ----------
    H : Tensor, (P, D, D)
    directions : Tensor, (D,), (K, D) or (P, K, D)
        Directions; each is scaled to unit length first.

    Returns
    -------
    Tensor, (P, K)

    Raises
    ------
    ValueError
        On a shape mismatch or a zero direction.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024 (Hessian flatness ``F^H_v = vᵀ H v``).
    """
    _check_square("H", H)
    U = normalize_directions(directions.to(H.dtype), H.shape[0], H.shape[1])
    return torch.einsum("pki,pij,pkj->pk", U, H, U)


@dataclass(frozen=True)
class IntervalFlatness:
    """Interval flatness along directions.

    Attributes
    ----------
    width : Tensor, (P, K)
        ``s_+ − s_−``; NaN where the interval is unbounded and ``on_unbounded="nan"``.
    left, right : Tensor, (P, K)
        ``s_− < 0 < s_+``, the first crossings of the level on each side.
    center_loss : Tensor, (P,)
        ``L(θ)``.
    level : float
        ``c``; the crossings solve ``L(θ + s u) = c · L(θ)``.
    """

    width: Tensor
    left: Tensor
    right: Tensor
    center_loss: Tensor
    level: float

    def to_dict(self) -> dict:
        return {
            "width": self.width.tolist(),
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "center_loss": self.center_loss.tolist(),
            "level": self.level,
        }

    def __repr__(self) -> str:
        P, K = self.width.shape
        return (
            f"IntervalFlatness(paths={P}, directions={K}, level={self.level:g}, "
            f"median width={float(self.width.nanmedian()):.4g})"
        )


def interval_flatness(
    loss_fn: LossFn,
    theta: Tensor,
    directions: Tensor,
    *,
    level: float = 2.0,
    max_distance: float = 100.0,
    min_distance: float | None = None,
    grid_points: int = 96,
    xtol: float = 1e-12,
    rtol: float = 1e-10,
    on_unbounded: str = "raise",
) -> IntervalFlatness:
    """Width of the interval of ``s`` around 0 on which ``L(θ + s u) ≤ c · L(θ)``.

    On each side, the loss is first evaluated (in one batched call) on a geometric grid
    ``min_distance … max_distance``; the first grid point above the level brackets the first
    crossing together with its predecessor (where the loss is still at or below the level), and
    the Illinois method refines all crossings at once, one batched loss call per iteration. The
    loss need not be monotone along ``u``: the interval is the connected piece containing
    ``s = 0`` as resolved by the grid (a re-entry narrower than one grid step can be missed; raise
    ``grid_points`` to resolve it).

    Parameters
    ----------
    loss_fn : callable
        Batched loss ``(N, D) -> (N,)``, e.g. ``lambda t: net.loss(t, X, y)``.
    theta : Tensor, (P, D) or (D,)
        Centres.
    directions : Tensor, (D,), (K, D) or (P, K, D)
        Directions, scaled to unit length.
    level : float
        ``c > 1`` (default 2, as in Feng & Tu 2021).
    max_distance : float
        Largest ``|s|`` searched on each side.
    min_distance : float, optional
        First grid point; default ``max_distance · 1e-7``.
    grid_points : int
        Grid points per side (≥ 8).
    xtol, rtol : float
        A crossing ``s`` is located to ``xtol + rtol · |s|``.
    on_unbounded : {"raise", "nan"}
        What to do when the loss stays below the level up to ``max_distance`` on a side.

    Returns
    -------
    IntervalFlatness

    Raises
    ------
    ValueError
        On invalid arguments, or if ``L(θ) ≤ 0`` (the level ``c · L(θ)`` is then not above the
        centre and the width is undefined) or the loss is already above the level at
        ``min_distance``.
    UnboundedIntervalError
        If ``on_unbounded="raise"`` and the loss never reaches the level within
        ``max_distance`` on some side (the message names the path, direction and side).

    References
    ----------
    Y. Feng, Y. Tu, PNAS 118(9), 2021; Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024.

    Examples
    --------
    >>> import torch
    >>> loss = lambda t: 1.0 + 0.5 * (t ** 2).sum(dim=1)
    >>> res = interval_flatness(loss, torch.zeros(1, 2, dtype=torch.float64),
    ...                         torch.eye(2, dtype=torch.float64))
    >>> [round(w, 9) for w in res.width[0].tolist()]   # 2·sqrt(2 (c − 1) L0 / q)
    [2.828427125, 2.828427125]
    """
    if not (math.isfinite(level) and level > 1.0):
        raise ValueError(f"`level` must be a finite number > 1; got {level!r}.")
    if not (math.isfinite(max_distance) and max_distance > 0):
        raise ValueError(f"`max_distance` must be a finite number > 0; got {max_distance!r}.")
    if min_distance is None:
        min_distance = max_distance * 1e-7
    if not 0 < min_distance < max_distance:
        raise ValueError(
            f"`min_distance` must be in (0, max_distance={max_distance:g}); got {min_distance!r}."
        )
    if int(grid_points) != grid_points or grid_points < 8:
        raise ValueError(f"`grid_points` must be an integer ≥ 8; got {grid_points!r}.")
    if on_unbounded not in ("raise", "nan"):
        raise ValueError(f"`on_unbounded` must be 'raise' or 'nan'; got {on_unbounded!r}.")
    if theta.ndim == 1:
        theta = theta.unsqueeze(0)
    if theta.ndim != 2:
        raise ValueError(f"`theta` must have shape (P, D) or (D,); got {tuple(theta.shape)}.")
    P, D = theta.shape
    U = normalize_directions(directions.to(theta), P, D)
    K = U.shape[1]

    with torch.no_grad():
        L0 = loss_fn(theta)
        if L0.shape != (P,):
            raise ValueError(f"`loss_fn` must map (N, D) to (N,); got output {tuple(L0.shape)}.")
        if bool((L0 <= 0).any()) or not bool(torch.isfinite(L0).all()):
            bad = int(torch.nonzero((L0 <= 0) | ~torch.isfinite(L0))[0])
            raise ValueError(
                f"interval flatness needs a finite loss > 0 at the centre; path {bad} has "
                f"L(θ) = {float(L0[bad]):.3g}."
            )
        target = level * L0  # (P,)
        grid = torch.logspace(
            math.log10(min_distance), math.log10(max_distance), int(grid_points),
            dtype=theta.dtype, device=theta.device,
        )
        signed = torch.stack([-grid, grid])  # (2, G): side 0 = left, 1 = right
        pts = theta[:, None, None, None, :] + signed[None, None, :, :, None] * U[:, :, None, None]
        G = grid.shape[0]
        vals = loss_fn(pts.reshape(-1, D)).reshape(P, K, 2, G)
    above = vals > target[:, None, None, None]
    if bool(above[..., 0].any()):
        p, k, side = (int(i) for i in torch.nonzero(above[..., 0])[0])
        raise ValueError(
            f"the loss already exceeds {level:g} · L(θ) at distance "
            f"min_distance={min_distance:.3g} "
            f"(path {p}, direction {k}, {'left' if side == 0 else 'right'}); lower `min_distance`."
        )
    any_above = above.any(dim=-1)
    # index of the first grid point above the level; G marks "never above" (unbounded side)
    first = torch.where(
        any_above,
        above.to(torch.int8).argmax(dim=-1),
        torch.full_like(any_above, G, dtype=torch.long),
    )

    if on_unbounded == "raise" and not bool(any_above.all()):
        p, k, side = (int(i) for i in torch.nonzero(~any_above)[0])
        raise UnboundedIntervalError(
            f"the loss along direction {k} of path {p} stays below {level:g} · L(θ) = "
            f"{float(target[p]):.4g} on the {'left' if side == 0 else 'right'} up to "
            f"max_distance={max_distance:g}; increase `max_distance` or use on_unbounded='nan'."
        )
    # bracket [lo, hi] of each first crossing: lo at or below the level, hi above it
    idx = first.clamp(1, G - 1)
    lo, hi = grid[idx - 1], grid[idx]
    f_lo = torch.gather(vals, 3, (idx - 1).unsqueeze(-1))[..., 0] - target[:, None, None]
    f_hi = torch.gather(vals, 3, idx.unsqueeze(-1))[..., 0] - target[:, None, None]
    root = _refine(loss_fn, theta, U, target, lo, hi, f_lo, f_hi, any_above, xtol, rtol)
    out = torch.where(any_above, root * torch.tensor([-1.0, 1.0], dtype=theta.dtype,
                                                      device=theta.device), torch.nan)
    left, right = out[..., 0], out[..., 1]
    return IntervalFlatness(
        width=right - left, left=left, right=right, center_loss=L0.detach(), level=float(level)
    )


def _refine(loss_fn: LossFn, theta: Tensor, U: Tensor, target: Tensor, lo: Tensor, hi: Tensor,
            f_lo: Tensor, f_hi: Tensor, active: Tensor, xtol: float, rtol: float,
            max_iter: int = 200) -> Tensor:
    """All crossings ``L(θ_p ± s u_pk) = target_p`` at once, by the Illinois method.

    Each bracket ``(lo, hi)`` (distances ``s > 0``; side 0 is ``−s``) has ``f(lo) ≤ 0 < f(hi)``.
    Every iteration evaluates the loss once at the regula-falsi point of every unconverged
    bracket (one batched call); the function value kept at a bracket end that survives twice is
    halved (Illinois), which makes both ends converge superlinearly. A bracket stops when its
    width is at most ``xtol + rtol · s``; its root is the midpoint.

    References
    ----------
    M. Dowell, P. Jarratt, "A modified regula falsi method for computing the root of an
    equation", BIT 11 (1971).
    """
    P, K = lo.shape[:2]
    sign = torch.tensor([-1.0, 1.0], dtype=theta.dtype, device=theta.device)
    last = torch.zeros_like(lo, dtype=torch.int8)  # which end moved last: −1 lo, +1 hi
    todo = active & ((hi - lo) > xtol + rtol * hi)
    for _ in range(max_iter):
        if not bool(todo.any()):
            break
        p, k, side = torch.nonzero(todo, as_tuple=True)
        a, b, fa, fb = lo[todo], hi[todo], f_lo[todo], f_hi[todo]
        c = b - fb * (b - a) / (fb - fa)
        bad = ~((c > a) & (c < b))
        c = torch.where(bad, 0.5 * (a + b), c)
        with torch.no_grad():
            fc = loss_fn(theta[p] + (sign[side] * c).unsqueeze(-1) * U[p, k]) - target[p]
        up = fc > 0  # c replaces hi
        moved = torch.where(up, torch.ones_like(c, dtype=torch.int8),
                            -torch.ones_like(c, dtype=torch.int8))
        same = moved == last[todo]
        fa = torch.where(up & same, 0.5 * fa, fa)
        fb = torch.where(~up & same, 0.5 * fb, fb)
        lo[todo] = torch.where(up, a, c)
        hi[todo] = torch.where(up, c, b)
        f_lo[todo] = torch.where(up, fa, fc)
        f_hi[todo] = torch.where(up, fc, fb)
        last[todo] = moved
        todo = active & ((hi - lo) > xtol + rtol * hi)
    return 0.5 * (lo + hi)
