"""``solve()``: an Itô SDE on a fixed grid, batched over sample paths."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..brownian import Increments
from ..noise import brownian_dim
from ..sde import SDE, NoiseKind, shape_probe_drift
from ..solvers import Solver
from .common import (
    checked_diffusion,
    make_generator,
    nonfinite_message,
    run_setup,
    save_indices,
    time_loop,
)

__all__ = ["solve", "Solution", "NonFiniteError"]


@dataclass(frozen=True)
class Solution:
    """The result of :func:`solve`.

    Attributes
    ----------
    ts : Tensor, (S,)
        Save times.
    xs : Tensor, (S, P, D)
        States at the save times. After a non-finite failure only the rows that were reached hold
        values; the rest are NaN.
    n_steps : int
        Steps taken.
    dt : float
        Step size.
    method : str
        Solver name.
    seed : int or None
        The seed of the generator used, when :func:`solve` created it (``None`` when the caller
        passed a generator or the noise came from a torchsde Brownian object).
    first_nonfinite_step : Tensor or None, (P,)
        Per path, the first step (1-based) after which the state was non-finite, ``-1`` for paths
        that stayed finite; ``None`` when every path stayed finite.
    seconds : float
        Wall-clock time of the time loop (validation and set-up excluded).
    """

    ts: Tensor
    xs: Tensor
    n_steps: int
    dt: float
    method: str
    seed: int | None = None
    first_nonfinite_step: Tensor | None = field(default=None, repr=False)
    seconds: float = field(default=float("nan"), repr=False)

    @property
    def path_steps_per_second(self) -> float:
        """Throughput of the time loop: paths × steps / :attr:`seconds`."""
        return self.xs.shape[1] * self.n_steps / self.seconds if self.seconds > 0 else math.inf

    @property
    def final(self) -> Tensor:
        """The state at the last save time, ``(P, D)``."""
        return self.xs[-1]

    @property
    def n_nonfinite(self) -> int:
        """Number of paths that became non-finite."""
        if self.first_nonfinite_step is None:
            return 0
        return int((self.first_nonfinite_step >= 0).sum())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the states themselves are not included)."""
        return {
            "ts": self.ts.tolist(),
            "paths": int(self.xs.shape[1]),
            "dim": int(self.xs.shape[2]),
            "n_steps": self.n_steps,
            "dt": self.dt,
            "method": self.method,
            "seed": self.seed,
            "n_nonfinite": self.n_nonfinite,
            "seconds": self.seconds,
            "path_steps_per_second": self.path_steps_per_second,
        }

    def __repr__(self) -> str:
        S, P, D = self.xs.shape
        return (
            f"Solution(method={self.method!r}, paths={P}, dim={D}, saves={S}, "
            f"n_steps={self.n_steps}, dt={self.dt:g}, n_nonfinite={self.n_nonfinite})"
        )


class NonFiniteError(FloatingPointError):
    """Some paths became NaN or infinite. ``.solution`` holds everything computed up to then
    (a :class:`Solution`, or a :class:`~smetool.integrate.CoupledSolution` from
    :func:`~smetool.solve_coupled`)."""

    def __init__(self, message: str, solution: Any):
        super().__init__(message)
        self.solution = solution


def solve(
    sde: SDE | Any,
    x0: Tensor,
    t_span: tuple[float, float],
    *,
    dt: float,
    method: Solver | str | None = None,
    generator: torch.Generator | int | None = None,
    save_at: Sequence[float] | Tensor | None = None,
    increments: Increments | str | Any | None = None,
    n_paths: int | None = None,
    on_nonfinite: str = "raise",
    progress: bool = False,
) -> Solution:
    """Integrate an Itô SDE on a fixed grid, batched over sample paths.

    Parameters
    ----------
    sde : SDE or torchsde-style object
        The SDE (see :class:`smetool.SDE`); a torchsde object with ``f``, ``g``, ``noise_type``
        and ``sde_type="ito"`` is adapted.
    x0 : Tensor, (P, D) or (D,)
        Initial states; a 1-D ``x0`` needs ``n_paths`` and is shared by every path. Device and
        dtype of the whole computation follow ``x0``.
    t_span : (float, float)
        ``(t0, t1)`` with ``t0 < t1``.
    dt : float
        Step size; it must divide ``t1 − t0`` into whole steps.
    method : Solver or str, default EulerMaruyama()
        A solver object (``EulerMaruyama()``, ``Milstein()``, ``PlatenWeak2()``) or its name.
    generator : torch.Generator, int or None
        The randomness: a generator on x0's device, a seed, or ``None`` for a fresh seed (recorded
        in :attr:`Solution.seed` so that the run can be repeated).
    save_at : sequence of float, optional
        Grid times at which to save the state; default ``(t0, t1)``.
    increments : str, Increments or torchsde Brownian object, optional
        ``"gaussian"`` (default), ``"rademacher"`` (weak order 1 only), ``"three_point"``, an
        :class:`~smetool.brownian.Increments`, or a torchsde Brownian object queried as
        ``bm(t, t + dt)``.
    n_paths : int, optional
        Number of paths when ``x0`` is 1-D.
    on_nonfinite : {"raise", "continue"}
        What to do when a path becomes NaN/inf: raise :class:`NonFiniteError` (carrying the partial
        solution), or carry on and report the paths in :attr:`Solution.first_nonfinite_step`.
    progress : bool
        Show a progress bar over steps.

    Returns
    -------
    Solution

    Raises
    ------
    ValueError
        Bad shapes, non-finite ``x0``, a step that does not divide the span, save times off the
        grid, a diffusion of the wrong shape.
    UnsupportedError
        A solver asked for a noise kind or increments it cannot handle.
    NonFiniteError
        A path became non-finite and ``on_nonfinite="raise"``.

    Examples
    --------
    >>> import torch, smetool
    >>> ou = smetool.FunctionSDE(lambda t, x: -x, lambda t, x: torch.ones_like(x) * 0.5)
    >>> sol = smetool.solve(ou, torch.ones(1000, 2), (0.0, 1.0), dt=0.01, generator=0)
    >>> sol.xs.shape
    torch.Size([2, 1000, 2])
    """
    sde, solver, inc, x, t0, n = run_setup(sde, method, increments, x0, n_paths, on_nonfinite,
                                           t_span, dt)
    save_idx = save_indices(save_at, t0, dt, n)
    solver.check(sde, inc)
    if sde.noise_kind is NoiseKind.SAMPLED and inc.name == "torchsde":
        raise ValueError(
            "noise_kind='sampled' draws its own noise from the generator; a torchsde Brownian "
            "object cannot drive it. Pass `generator` instead of `increments`."
        )
    gen, seed = make_generator(generator, x.device)
    if inc.name == "torchsde":
        seed = None

    P, D = x.shape
    M = None
    if sde.noise_kind is not NoiseKind.SAMPLED:
        g = checked_diffusion(sde, t0, x)
        M = brownian_dim(sde, g, D)
    drift0 = shape_probe_drift(sde, t0, x)
    if tuple(drift0.shape) != (P, D):
        raise ValueError(
            f"{sde!r}: drift(t, x) must have the shape of x {(P, D)}; got {tuple(drift0.shape)}."
        )

    xs = torch.full((len(save_idx), P, D), float("nan"), dtype=x.dtype, device=x.device)
    slots = {k: i for i, k in enumerate(save_idx)}
    if 0 in slots:
        xs[slots[0]] = x

    def advance(state: tuple[Tensor, ...], k: int) -> tuple[Tensor, ...]:
        t = t0 + k * dt
        dW = None if M is None else inc.sample(t, t + dt, (P, M), gen, x.dtype, x.device)
        return (solver.step(sde, t, state[0], dt, dW, gen),)

    def save(state: tuple[Tensor, ...], k: int) -> None:
        if k in slots:
            xs[slots[k]] = state[0]

    started = time.perf_counter()
    loop = time_loop(advance, (x,), n, gen, save=save, on_nonfinite=on_nonfinite,
                     progress=f"solve ({solver.name})" if progress else None)
    seconds = time.perf_counter() - started
    ts = torch.tensor([t0 + i * dt for i in save_idx], dtype=x.dtype, device=x.device)
    sol = Solution(ts, xs, loop.steps, dt, solver.name, seed, loop.first_nonfinite_step, seconds)
    if loop.raised:
        raise NonFiniteError(nonfinite_message(loop.first_bad, t0, dt), sol)
    return sol
