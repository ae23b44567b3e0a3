"""What the integrators share: argument checks, the solver and generator at the boundary, the
non-finite message, and the one time-stepping loop (:func:`time_loop`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..brownian import Increments, as_increments
from ..device import steady_allocator
from ..noise import check_diffusion
from ..sde import SDE, as_sde
from ..solvers import EulerMaruyama, Solver, get_solver

__all__ = ["make_generator", "grid_steps", "save_indices", "checked_diffusion", "nonfinite_message",
           "as_solver", "check_x0", "time_loop", "LoopOutcome", "RunSetup", "run_setup"]


def make_generator(
    generator: torch.Generator | int | None, device: torch.device
) -> tuple[torch.Generator, int | None]:
    """A generator from a seed, a generator or ``None`` (a fresh OS-entropy seed, returned).

    Never touches torch's global random state.
    """
    if isinstance(generator, torch.Generator):
        if torch.device(generator.device).type != torch.device(device).type:
            raise ValueError(
                f"`generator` must live on the device of x0 ({device}); got one on "
                f"{generator.device}."
            )
        return generator, None
    gen = torch.Generator(device=device)
    if generator is None:
        return gen, int(gen.seed())
    if isinstance(generator, bool) or not isinstance(generator, int) or generator < 0:
        raise ValueError(
            f"`generator` must be a torch.Generator, a non-negative int seed or None; got {generator!r}."
        )
    gen.manual_seed(generator)
    return gen, int(generator)


def grid_steps(t0: float, t1: float, dt: float) -> int:
    """The number of steps of ``dt`` in ``[t0, t1]`` (a whole number)."""
    if not (math.isfinite(t0) and math.isfinite(t1)) or not t1 > t0:
        raise ValueError(f"`t_span` must be (t0, t1) with finite t0 < t1; got ({t0}, {t1}).")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"`dt` must be a positive finite number; got {dt!r}.")
    n = round((t1 - t0) / dt)
    if n < 1 or abs(n * dt - (t1 - t0)) > 1e-9 * max(1.0, abs(t1 - t0)):
        raise ValueError(
            f"`dt` must divide the time span t1 - t0 = {t1 - t0:g} into whole steps; got dt={dt:g} "
            f"({(t1 - t0) / dt:.6g} steps)."
        )
    return n


def save_indices(save_at: Sequence[float] | Tensor | None, t0: float, dt: float,
                 n: int) -> list[int]:
    """The grid indices of the save times (default: the two ends)."""
    if save_at is None:
        return [0, n]
    times = [float(s) for s in (save_at.tolist() if isinstance(save_at, Tensor) else save_at)]
    if not times:
        raise ValueError("`save_at` must hold at least one time; got an empty sequence.")
    idx = []
    for s in times:
        k = round((s - t0) / dt)
        if k < 0 or k > n or abs(t0 + k * dt - s) > 1e-9 * max(1.0, abs(s)):
            raise ValueError(
                f"`save_at` times must be grid points t0 + k·dt in [t0, t1] (dt={dt:g}); got {s:g}."
            )
        idx.append(k)
    if any(b <= a for a, b in zip(idx, idx[1:])):
        raise ValueError(f"`save_at` must be strictly increasing; got {times}.")
    return idx


def checked_diffusion(sde: SDE, t: float, x: Tensor) -> Tensor:
    """The diffusion at ``(t, x[:1])``, checked against the declared noise kind.

    One path suffices to check the layout (a full evaluation can be costly); when the check
    fails, the diffusion is evaluated on every path so that the error shows the shapes the user
    gave.
    """
    g = sde.diffusion(t, x[:1])
    try:
        check_diffusion(sde, g, x[:1])
    except ValueError:
        check_diffusion(sde, sde.diffusion(t, x), x)
        raise
    return g


def nonfinite_message(first_bad: Tensor, t0: float, dt: float) -> str:
    """Which paths became non-finite and when, in one sentence."""
    bad = (first_bad >= 0).nonzero().flatten()
    first = int(first_bad[bad].min())
    shown = ", ".join(str(int(i)) for i in bad[:10])
    more = "" if bad.numel() <= 10 else f", … ({bad.numel() - 10} more)"
    return (
        f"{bad.numel()} of {first_bad.numel()} paths became non-finite; the first at step {first} "
        f"(t = {t0 + first * dt:g}). Paths: {shown}{more}. The states saved before that are in "
        "the exception's .solution; a smaller dt, or on_nonfinite='continue', may help."
    )


def as_solver(method: Solver | str | None) -> Solver:
    """A solver object from a solver, its name or ``None`` (Euler–Maruyama)."""
    if method is None:
        return EulerMaruyama()
    if isinstance(method, str):
        return get_solver(method)
    if isinstance(method, Solver):
        return method
    if isinstance(method, type) and issubclass(method, Solver):
        raise TypeError(f"`method` must be a solver instance such as {method.__name__}(); got the class.")
    raise TypeError(f"`method` must be a Solver or a solver name; got {method!r}.")


def check_x0(x0: Tensor, n_paths: int | None) -> Tensor:
    """``x0`` as a fresh ``(P, D)`` floating, finite tensor (a 1-D ``x0`` needs ``n_paths``)."""
    if not isinstance(x0, Tensor):
        raise TypeError(f"`x0` must be a torch.Tensor of shape (paths, dim); got {type(x0).__name__}.")
    if not x0.is_floating_point():
        raise ValueError(f"`x0` must have a floating dtype; got {x0.dtype}.")
    if x0.ndim == 1:
        if n_paths is None:
            raise ValueError(
                f"`x0` has shape {tuple(x0.shape)}; give shape (paths, dim) or pass n_paths=."
            )
        if int(n_paths) != n_paths or n_paths < 1:
            raise ValueError(f"`n_paths` must be a positive integer; got {n_paths!r}.")
        x0 = x0.unsqueeze(0).expand(int(n_paths), -1)
    elif x0.ndim != 2:
        raise ValueError(f"`x0` must have shape (paths, dim); got {tuple(x0.shape)}.")
    elif n_paths is not None and n_paths != x0.shape[0]:
        raise ValueError(f"`n_paths` ({n_paths}) does not match x0's {x0.shape[0]} paths.")
    if not bool(torch.isfinite(x0).all()):
        bad = (~torch.isfinite(x0).all(dim=1)).nonzero().flatten()
        raise ValueError(
            f"`x0` must be finite; got NaN/inf in {bad.numel()} path(s), e.g. path {int(bad[0])}."
        )
    return x0.clone()


@dataclass(frozen=True)
class LoopOutcome:
    """What :func:`time_loop` returns: the final states, the steps taken, the first bad steps."""

    state: tuple[Tensor, ...]
    steps: int
    first_bad: Tensor
    raised: bool

    @property
    def first_nonfinite_step(self) -> Tensor | None:
        """Per path the first non-finite step (``-1``: never), or ``None`` if every path stayed
        finite."""
        return self.first_bad if bool((self.first_bad >= 0).any()) else None


class RunSetup(NamedTuple):
    """The checked arguments of an integrator (see :func:`run_setup`)."""

    sde: SDE
    solver: Solver
    increments: Increments
    x: Tensor
    t0: float
    n_steps: int


def run_setup(sde: Any, method: Solver | str | None, increments: Any, x0: Tensor,
              n_paths: int | None, on_nonfinite: str, t_span: tuple[float, float],
              dt: float) -> RunSetup:
    """What :func:`~smetool.solve` and :func:`~smetool.integrate.solve_coupled` check and build
    first: the SDE, the solver, the increments, ``x0`` as ``(P, D)``, the start time and the number
    of steps of ``dt`` in ``t_span``."""
    sde = as_sde(sde)
    solver = as_solver(method)
    inc = as_increments(increments)
    x = check_x0(x0, n_paths)
    if on_nonfinite not in ("raise", "continue"):
        raise ValueError(f"`on_nonfinite` must be 'raise' or 'continue'; got {on_nonfinite!r}.")
    t0, t1 = (float(t) for t in t_span)
    return RunSetup(sde, solver, inc, x, t0, grid_steps(t0, t1, dt))


def time_loop(
    advance: Callable[[tuple[Tensor, ...], int], tuple[Tensor, ...]],
    state: tuple[Tensor, ...],
    n: int,
    generator: torch.Generator,
    *,
    save: Callable[[tuple[Tensor, ...], int], None],
    on_nonfinite: str = "raise",
    progress: str | None = None,
) -> LoopOutcome:
    """The one time-stepping loop of smetool, with windowed non-finite detection.

    ``advance(state, k)`` maps the states after step ``k`` (a tuple of ``(P, D)`` tensors, all
    for the same ``P`` paths) to those after step ``k + 1``, drawing its randomness from
    ``generator`` only; ``save(state, k)`` is called after every step ``k ≥ 1``. Non-finite states
    are looked for once per window of steps, not every step (a device sync on GPUs, a full pass
    over the state everywhere). When a window turns up one, it is replayed from its start with the
    same random draws, step by step, which gives every path's exact first bad step; with
    ``on_nonfinite="raise"`` the loop stops there (``raised``), with ``"continue"`` the rest of
    the run is tracked per step. A path is bad when any of its states is. The loop runs with
    freed CPU memory kept for reuse (:func:`~smetool.device.steady_allocator`): each step
    allocates what the last one freed.

    Returns
    -------
    LoopOutcome
    """
    P = state[0].shape[0]
    first_bad = torch.full((P,), -1, dtype=torch.long, device=state[0].device)

    def finite_rows(s: tuple[Tensor, ...]) -> Tensor:
        # A NaN or inf coordinate makes the row sum non-finite (a finite row whose sum overflows
        # counts as diverged, which it has for any purpose).
        ok = torch.isfinite(s[0].sum(dim=1))
        for other in s[1:]:
            ok = ok & torch.isfinite(other.sum(dim=1))
        return ok

    def track(s: tuple[Tensor, ...], k: int) -> None:
        first_bad.masked_fill_(~finite_rows(s) & (first_bad < 0), k)

    bar = None
    if progress is not None:
        from tqdm.auto import tqdm  # only for the bar

        bar = tqdm(total=n, desc=progress, unit="step", leave=False)
    window = 8 if state[0].device.type == "cpu" else 32
    per_step = False
    anchor, anchor_k, anchor_rng = state, 0, generator.get_state()
    with steady_allocator():
        try:
            for k in range(1, n + 1):
                state = advance(state, k - 1)
                if per_step:
                    track(state, k)
                elif k % window == 0 or k == n:
                    if not bool(finite_rows(state).all()):
                        generator.set_state(anchor_rng)
                        replay = anchor
                        for j in range(anchor_k + 1, k + 1):
                            replay = advance(replay, j - 1)
                            track(replay, j)
                        state = replay
                        if on_nonfinite == "raise":
                            save(state, k)
                            return LoopOutcome(state, k, first_bad, True)
                        per_step = True
                    anchor, anchor_k, anchor_rng = state, k, generator.get_state()
                save(state, k)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    return LoopOutcome(state, n, first_bad, False)


