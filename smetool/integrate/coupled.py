"""``solve_coupled()``: one Brownian path at steps ``h, 2h, 4h, …``, and tangents driven by it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..noise import brownian_dim
from ..sde import SDE, NoiseKind
from ..solvers import Solver
from ..solvers.base import noise_increment
from .common import checked_diffusion, nonfinite_message, run_setup, time_loop
from .solve import NonFiniteError

__all__ = ["solve_coupled", "CoupledSolution", "LinearTangent"]


@dataclass(frozen=True)
class LinearTangent:
    """Deterministic maps of two tangents driven by the increments ``ΔW_j`` of one grid.

    * ``M_{j+1} = A_j M_j + σ(x_j) ΔW_j``: the noise the path actually receives (at its own
      state ``x_j``), propagated linearly;
    * with ``B``: ``δ_{j+1} = A_j δ_j + B_j ΔW_j``, the noise with deterministic coefficients.

    Attributes
    ----------
    A : Tensor, (n, D, D)
        Deterministic linear maps, one per step of the grid.
    B : Tensor (n, D, M) or None
        Deterministic noise coefficients, one per step (``None``: no ``δ``).
    """

    A: Tensor
    B: Tensor | None = None


@dataclass(frozen=True)
class CoupledSolution:
    """The result of :func:`solve_coupled`: one Brownian path, ``L`` step sizes.

    Attributes
    ----------
    levels : tuple of Tensor, (P, D) each
        Final states at steps ``dt, 2 dt, …, 2^{L−1} dt`` (finest first).
    n_steps : int
        Fine steps taken.
    dt : float
    method : str
    first_nonfinite_step : Tensor or None, (P,)
        Per path, the first fine step after which a state of any level was non-finite (``-1``:
        never); ``None`` when every path stayed finite.
    martingales, tangents : tuple of Tensor (P, D), one per level, or empty
        The final ``M`` and ``δ`` of each level's :class:`LinearTangent` (``δ`` only with ``B``).
    """

    levels: tuple[Tensor, ...]
    n_steps: int
    dt: float
    method: str
    first_nonfinite_step: Tensor | None = field(default=None, repr=False)
    martingales: tuple[Tensor, ...] = field(default=(), repr=False)
    tangents: tuple[Tensor, ...] = field(default=(), repr=False)

    @property
    def fine(self) -> Tensor:
        """The final states at step ``dt``."""
        return self.levels[0]

    @property
    def coarse(self) -> Tensor:
        """The final states at step ``2 dt`` (needs two levels or more)."""
        return self.levels[1]


def solve_coupled(
    sde: SDE | Any,
    x0: Tensor,
    t_span: tuple[float, float],
    *,
    dt: float,
    method: Solver | str | None = None,
    generator: torch.Generator,
    on_nonfinite: str = "raise",
    levels: int = 2,
    tangent: LinearTangent | Sequence[LinearTangent] | None = None,
) -> CoupledSolution:
    """Integrate an SDE at steps ``dt, 2 dt, …, 2^{L−1} dt`` on one Brownian path.

    Each increment of level ``l`` is the sum of the ``2^l`` fine increments it spans, so the
    final states are coupled and differences of ``E g`` between levels are estimated with a
    small variance: the levels of a scheme whose weak error is ``c_p h^p + c_{p+1} h^{p+1} + …``
    give its Richardson (Talay–Tubaro) extrapolation (:func:`~smetool.richardson_weights`),
    which removes the first ``L − 1`` terms. SAMPLED noise has no Brownian increments to share:
    each level draws independently, after the finer ones. Gaussian increments; the same
    non-finite handling as :func:`solve` (:func:`time_loop`).

    Parameters
    ----------
    sde : SDE or torchsde-style object
    x0 : Tensor, (P, D)
        Initial states; device and dtype of the computation follow it.
    t_span : (float, float)
    dt : float
        The fine step; ``t1 − t0`` must be a whole multiple of ``2^{L−1} dt``.
    method : Solver or str, default EulerMaruyama()
    generator : torch.Generator
        On the device of ``x0``.
    on_nonfinite : {"raise", "continue"}
        As for :func:`solve`.
    levels : int
        ``L ≥ 1``, the number of step sizes (default 2: ``dt`` and ``2 dt``).
    tangent : LinearTangent or sequence of LinearTangent, optional
        One per level (finest first; a single one for the fine level alone): also propagate its
        tangents ``M`` and ``δ`` from 0 with that level's increments (the small-noise control
        variates of :mod:`smetool.montecarlo.control`). Tangents consume no random numbers, so
        the paths are the same with or without them.

    Returns
    -------
    CoupledSolution

    Raises
    ------
    ValueError
        A bad ``levels``, a span that is not a whole number of coarsest steps, tangents of the
        wrong number or shape, bad shapes or spans.
    NonFiniteError
        A path became non-finite and ``on_nonfinite="raise"``.
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"`levels` must be an integer ≥ 1; got {levels!r}.")
    sde, solver, inc, x, t0, n = run_setup(sde, method, None, x0, None, on_nonfinite, t_span, dt)
    block = 2 ** (levels - 1)
    if n % block:
        raise ValueError(
            f"`dt` must divide the time span into a multiple of {block} steps (the coarsest of "
            f"{levels} levels takes {block}·dt); got {n} steps of {dt:g}.")
    solver.check(sde, inc)
    maps = _per_level(tangent, levels)
    P, D = x.shape
    gen = generator
    nothing = lambda state, k: None  # noqa: E731 - only the final states are kept
    if sde.noise_kind is NoiseKind.SAMPLED:
        if maps:
            raise ValueError("`tangent` needs Brownian increments; SAMPLED noise has none.")
        return _sampled_levels(sde, solver, x, t0, dt, n, levels, gen, on_nonfinite)
    M = int(brownian_dim(sde, checked_diffusion(sde, t0, x), D) or D)
    for level, lin in enumerate(maps):
        steps = n // 2**level
        if tuple(lin.A.shape) != (steps, D, D) or (
                lin.B is not None and tuple(lin.B.shape) != (steps, D, M)):
            got = (tuple(lin.A.shape), None if lin.B is None else tuple(lin.B.shape))
            raise ValueError(f"`tangent` of level {level} (step {2**level}·dt) must hold A ({steps}, "
                             f"{D}, {D}) and B ({steps}, {D}, {M}) or None; got {got}.")
    with_delta = bool(maps) and maps[0].B is not None

    def advance(state: tuple[Tensor, ...], j: int) -> tuple[Tensor, ...]:
        # One block of 2^{L−1} fine steps; level l takes 2^{L−1−l} steps of 2^l dt in it.
        t = t0 + block * j * dt
        dW = [inc.sample(t + i * dt, t + (i + 1) * dt, (P, M), gen, x.dtype, x.device)
              for i in range(block)]
        out = list(state)
        for level in range(levels):
            size = 2**level
            for i in range(block // size):
                s = t + i * size * dt
                w = dW[i * size] if size == 1 else torch.stack(dW[i * size:(i + 1) * size]).sum(0)
                k = j * (block // size) + i  # the step index on this level's grid
                x_l = out[level]
                if maps:
                    lin = maps[level]
                    # The noise the step adds, at the state it starts from (computed before the
                    # step, so that an SDE caching its terms per state serves the step from them).
                    m = levels + level
                    out[m] = out[m] @ lin.A[k].T + noise_increment(sde, s, x_l, w)
                    if lin.B is not None:
                        d = 2 * levels + level
                        out[d] = out[d] @ lin.A[k].T + w @ lin.B[k].T
                out[level] = solver.step(sde, s, x_l, size * dt, w, gen)
        return tuple(out)

    start: tuple[Tensor, ...] = (x,) + tuple(x.clone() for _ in range(levels - 1))
    if maps:
        start += tuple(torch.zeros_like(x) for _ in range(levels * (2 if with_delta else 1)))
    loop = time_loop(advance, start, n // block, gen, save=nothing, on_nonfinite=on_nonfinite)
    # The loop counts blocks of fine steps; report fine steps.
    bad = torch.where(loop.first_bad >= 0, block * loop.first_bad, loop.first_bad)
    sol = CoupledSolution(
        tuple(loop.state[:levels]), block * loop.steps, dt, solver.name,
        bad if bool((bad >= 0).any()) else None,
        tuple(loop.state[levels:2 * levels]) if maps else (),
        tuple(loop.state[2 * levels:3 * levels]) if with_delta else ())
    if loop.raised:
        raise NonFiniteError(nonfinite_message(bad, t0, dt), sol)
    return sol


def _per_level(tangent: LinearTangent | Sequence[LinearTangent] | None,
               levels: int) -> tuple[LinearTangent, ...]:
    """The tangents as one per level (none, or all)."""
    if tangent is None:
        return ()
    maps = (tangent,) if isinstance(tangent, LinearTangent) else tuple(tangent)
    if len(maps) != levels or not all(isinstance(m, LinearTangent) for m in maps):
        raise ValueError(f"`tangent` must give one LinearTangent per level ({levels}); got "
                         f"{len(maps)}.")
    if len({m.B is None for m in maps}) > 1:
        raise ValueError("`tangent`: every level must have B, or none.")
    return maps


def _sampled_levels(sde: SDE, solver: Solver, x: Tensor, t0: float, dt: float, n: int,
                    levels: int, gen: torch.Generator, on_nonfinite: str) -> CoupledSolution:
    """SAMPLED noise: each level draws its own noise, after the finer ones."""
    nothing = lambda state, k: None  # noqa: E731 - only the final states are kept
    finals = []
    bad = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    raised = False
    for level in range(levels):
        size = 2**level

        def advance(s: tuple[Tensor, ...], k: int, size: int = size) -> tuple[Tensor, ...]:
            return (solver.step(sde, t0 + size * k * dt, s[0], size * dt, None, gen),)

        loop = time_loop(advance, (x,), n // size, gen, save=nothing, on_nonfinite=on_nonfinite)
        finals.append(loop.state[0])
        level_bad = torch.where(loop.first_bad >= 0, size * loop.first_bad, loop.first_bad)
        bad = torch.maximum(bad, level_bad)
        raised = raised or loop.raised
    sol = CoupledSolution(tuple(finals), n, dt, solver.name,
                          bad if bool((bad >= 0).any()) else None)
    if raised:
        raise NonFiniteError(nonfinite_message(bad, t0, dt), sol)
    return sol
