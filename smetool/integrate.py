"""``solve()``: the one time-stepping loop of smetool."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .brownian import Increments, as_increments
from .noise import brownian_dim, check_diffusion
from .sde import SDE, NoiseKind, as_sde, shape_probe_drift
from .solvers import EulerMaruyama, Solver, get_solver

__all__ = [
    "solve",
    "Solution",
    "NonFiniteError",
    "make_generator",
    "time_loop",
    "LoopOutcome",
    "solve_coupled",
    "CoupledSolution",
    "as_solver",
    "checked_diffusion",
]


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
    (a :class:`Solution`, or a :class:`CoupledSolution` from :func:`solve_coupled`)."""

    def __init__(self, message: str, solution: Any):
        super().__init__(message)
        self.solution = solution


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


def _grid_steps(t0: float, t1: float, dt: float) -> int:
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


def _save_indices(save_at: Sequence[float] | Tensor | None, t0: float, dt: float, n: int) -> list[int]:
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
    sde = as_sde(sde)
    solver = as_solver(method)
    inc = as_increments(increments)
    x = _check_x0(x0, n_paths)
    if on_nonfinite not in ("raise", "continue"):
        raise ValueError(f"`on_nonfinite` must be 'raise' or 'continue'; got {on_nonfinite!r}.")
    t0, t1 = (float(t) for t in t_span)
    n = _grid_steps(t0, t1, dt)
    save_idx = _save_indices(save_at, t0, dt, n)
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
        raise NonFiniteError(_nonfinite_message(loop.first_bad, t0, dt), sol)
    return sol


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
    the run is tracked per step. A path is bad when any of its states is.

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
    """

    fine: Tensor
    coarse: Tensor
    n_steps: int
    dt: float
    method: str
    first_nonfinite_step: Tensor | None = field(default=None, repr=False)


def solve_coupled(
    sde: SDE | Any,
    x0: Tensor,
    t_span: tuple[float, float],
    *,
    dt: float,
    method: Solver | str | None = None,
    generator: torch.Generator,
    on_nonfinite: str = "raise",
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
    sde = as_sde(sde)
    solver = as_solver(method)
    inc = as_increments(None)
    x = _check_x0(x0, None)
    if on_nonfinite not in ("raise", "continue"):
        raise ValueError(f"`on_nonfinite` must be 'raise' or 'continue'; got {on_nonfinite!r}.")
    t0, t1 = (float(t) for t in t_span)
    n = _grid_steps(t0, t1, dt)
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
            raise NonFiniteError(_nonfinite_message(bad, t0, dt), sol)
        return sol
    M = int(brownian_dim(sde, checked_diffusion(sde, t0, x), D) or D)

    def advance(state: tuple[Tensor, ...], j: int) -> tuple[Tensor, ...]:
        t = t0 + 2 * j * dt
        dW1 = inc.sample(t, t + dt, (P, M), gen, x.dtype, x.device)
        dW2 = inc.sample(t + dt, t + 2 * dt, (P, M), gen, x.dtype, x.device)
        x_f = solver.step(sde, t, state[0], dt, dW1, gen)
        x_f = solver.step(sde, t + dt, x_f, dt, dW2, gen)
        return x_f, solver.step(sde, t, state[1], 2 * dt, dW1 + dW2, gen)

    loop = time_loop(advance, (x, x.clone()), n // 2, gen, save=nothing, on_nonfinite=on_nonfinite)
    # The loop counts pairs of fine steps; report fine steps.
    bad = torch.where(loop.first_bad >= 0, 2 * loop.first_bad, loop.first_bad)
    sol = CoupledSolution(loop.state[0], loop.state[1], 2 * loop.steps, dt, solver.name,
                          bad if bool((bad >= 0).any()) else None)
    if loop.raised:
        raise NonFiniteError(_nonfinite_message(bad, t0, dt), sol)
    return sol


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


def _nonfinite_message(first_bad: Tensor, t0: float, dt: float) -> str:
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


def _check_x0(x0: Tensor, n_paths: int | None) -> Tensor:
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
