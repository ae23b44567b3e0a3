"""``solve_coupled()``: one Brownian path at two step sizes, and a tangent driven by it."""

from __future__ import annotations

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
    """Deterministic maps of two tangents driven by the fine increments ``ΔW_j``.

    * ``M_{j+1} = A_j M_j + σ(x_j) ΔW_j``: the noise the path actually receives (at its own
      state ``x_j``), propagated linearly;
    * with ``B``: ``δ_{j+1} = A_j δ_j + B_j ΔW_j``, the noise with deterministic coefficients.

    Attributes
    ----------
    A : Tensor, (n, D, D)
        Deterministic linear maps, one per fine step.
    B : Tensor (n, D, M) or None
        Deterministic noise coefficients, one per fine step (``None``: no ``δ``).
    """

    A: Tensor
    B: Tensor | None = None


@dataclass(frozen=True)
class CoupledSolution:
    """The result of :func:`solve_coupled`: one Brownian path, two step sizes.

    Attributes
    ----------
    fine, coarse : Tensor, (P, D)
        Final states at step ``dt`` and at ``2 dt``.
    n_steps : int
        Fine steps taken.
    dt : float
    method : str
    first_nonfinite_step : Tensor or None, (P,)
        Per path, the first fine step after which either state was non-finite (``-1``: never);
        ``None`` when every path stayed finite.
    martingale, tangent : Tensor (P, D) or None
        The final ``M`` and ``δ`` when a :class:`LinearTangent` was given (``δ`` only with its
        ``B``).
    """

    fine: Tensor
    coarse: Tensor
    n_steps: int
    dt: float
    method: str
    first_nonfinite_step: Tensor | None = field(default=None, repr=False)
    martingale: Tensor | None = field(default=None, repr=False)
    tangent: Tensor | None = field(default=None, repr=False)


def solve_coupled(
    sde: SDE | Any,
    x0: Tensor,
    t_span: tuple[float, float],
    *,
    dt: float,
    method: Solver | str | None = None,
    generator: torch.Generator,
    on_nonfinite: str = "raise",
    tangent: LinearTangent | None = None,
) -> CoupledSolution:
    """Integrate an SDE at step ``dt`` and, on the same Brownian path, at ``2 dt``.

    Each coarse increment is the sum of the two fine ones it spans, so the two final states are
    coupled and ``E g(fine) − E g(coarse)`` is estimated with a small variance: for a scheme of
    weak order ``p`` it is ``(2^p − 1)`` times the fine run's own error to leading order
    (Richardson). SAMPLED noise has no Brownian increments to share: its coarse run draws
    independently after the fine one. Gaussian increments; the same non-finite handling as
    :func:`solve` (:func:`time_loop`).

    Parameters
    ----------
    sde : SDE or torchsde-style object
    x0 : Tensor, (P, D)
        Initial states; device and dtype of the computation follow it.
    t_span : (float, float)
    dt : float
        The fine step; ``t1 − t0`` must be an even number of fine steps.
    method : Solver or str, default EulerMaruyama()
    generator : torch.Generator
        On the device of ``x0``.
    on_nonfinite : {"raise", "continue"}
        As for :func:`solve`.
    tangent : LinearTangent, optional
        Also propagate its tangents ``M`` and ``δ`` from 0 with the fine increments (the
        small-noise control variates of :mod:`smetool.montecarlo.control`); they consume no
        random numbers, so the paths are the same with or without them.

    Returns
    -------
    CoupledSolution

    Raises
    ------
    ValueError
        An odd number of fine steps, bad shapes or spans.
    NonFiniteError
        A path became non-finite and ``on_nonfinite="raise"``.
    """
    sde, solver, inc, x, t0, n = run_setup(sde, method, None, x0, None, on_nonfinite, t_span, dt)
    if n % 2:
        raise ValueError(
            f"`dt` must divide the time span into an even number of steps (the coarse run takes "
            f"2·dt); got {n} steps of {dt:g}.")
    solver.check(sde, inc)
    P, D = x.shape
    gen = generator
    nothing = lambda state, k: None  # noqa: E731 - only the final states are kept
    if sde.noise_kind is NoiseKind.SAMPLED:
        fine = time_loop(lambda s, k: (solver.step(sde, t0 + k * dt, s[0], dt, None, gen),),
                         (x,), n, gen, save=nothing, on_nonfinite=on_nonfinite)
        coarse = time_loop(
            lambda s, k: (solver.step(sde, t0 + 2 * k * dt, s[0], 2 * dt, None, gen),),
            (x,), n // 2, gen, save=nothing, on_nonfinite=on_nonfinite)
        bad = torch.maximum(fine.first_bad, 2 * coarse.first_bad)
        sol = CoupledSolution(fine.state[0], coarse.state[0], fine.steps, dt, solver.name,
                              bad if bool((bad >= 0).any()) else None)
        if fine.raised or coarse.raised:
            raise NonFiniteError(nonfinite_message(bad, t0, dt), sol)
        return sol
    M = int(brownian_dim(sde, checked_diffusion(sde, t0, x), D) or D)
    if tangent is not None and (tuple(tangent.A.shape) != (n, D, D) or (
            tangent.B is not None and tuple(tangent.B.shape) != (n, D, M))):
        got = (tuple(tangent.A.shape), None if tangent.B is None else tuple(tangent.B.shape))
        raise ValueError(
            f"`tangent` must hold A ({n}, {D}, {D}) and B ({n}, {D}, {M}) or None; got {got}.")

    def advance(state: tuple[Tensor, ...], j: int) -> tuple[Tensor, ...]:
        t = t0 + 2 * j * dt
        dW1 = inc.sample(t, t + dt, (P, M), gen, x.dtype, x.device)
        dW2 = inc.sample(t + dt, t + 2 * dt, (P, M), gen, x.dtype, x.device)
        if tangent is None:
            x_1 = solver.step(sde, t, state[0], dt, dW1, gen)
            x_f = solver.step(sde, t + dt, x_1, dt, dW2, gen)
            return x_f, solver.step(sde, t, state[1], 2 * dt, dW1 + dW2, gen)
        A = tangent.A
        # The noise each fine step actually adds, at the state it starts from (computed before
        # the step, so that an SDE caching its terms per state serves the step from them).
        m = state[2] @ A[2 * j].T + noise_increment(sde, t, state[0], dW1)
        x_1 = solver.step(sde, t, state[0], dt, dW1, gen)
        m = m @ A[2 * j + 1].T + noise_increment(sde, t + dt, x_1, dW2)
        x_f = solver.step(sde, t + dt, x_1, dt, dW2, gen)
        x_c = solver.step(sde, t, state[1], 2 * dt, dW1 + dW2, gen)
        if tangent.B is None:
            return x_f, x_c, m
        B = tangent.B
        delta = state[3] @ A[2 * j].T + dW1 @ B[2 * j].T
        delta = delta @ A[2 * j + 1].T + dW2 @ B[2 * j + 1].T
        return x_f, x_c, m, delta

    start: tuple[Tensor, ...] = (x, x.clone())
    if tangent is not None:
        start += (torch.zeros_like(x),) * (1 if tangent.B is None else 2)
    loop = time_loop(advance, start, n // 2, gen, save=nothing, on_nonfinite=on_nonfinite)
    # The loop counts pairs of fine steps; report fine steps.
    bad = torch.where(loop.first_bad >= 0, 2 * loop.first_bad, loop.first_bad)
    sol = CoupledSolution(loop.state[0], loop.state[1], 2 * loop.steps, dt, solver.name,
                          bad if bool((bad >= 0).any()) else None,
                          loop.state[2] if tangent is not None else None,
                          loop.state[3] if tangent is not None and tangent.B is not None
                          else None)
    if loop.raised:
        raise NonFiniteError(nonfinite_message(bad, t0, dt), sol)
    return sol
