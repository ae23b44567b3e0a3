"""The path producers of :func:`smetool.convergence`: a scheme and its reference on one Brownian
path.

Every producer draws the Brownian increments of its chunk as one table on the finest grid it
needs, ``(n, P, M)`` Gaussians of variance ``(t1 − t0)/n`` from the chunk's generator, and runs each
solve on sums of consecutive rows (:class:`TableIncrements`). Two producers given generators in
the same state (common random numbers in :func:`~smetool.weak_error`) therefore integrate the same
Brownian path, whatever their steps: the scheme at ``h`` and the reference at ``h_ref = h/k``
differ only by the discretisation. SAMPLED noise has no Brownian path: its solves draw from the
generator, uncoupled (unbiased, with a larger variance).

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, §9.7 (batch estimates);
D. Talay, L. Tubaro, Stoch. Anal. Appl. 8 (1990) (the extrapolated reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..brownian import Increments
from ..exact import LibraryProblem
from ..integrate import solve
from ..montecarlo import PathSample
from ..sde import SDE, NoiseKind
from ..solvers import Solver

__all__ = ["TableIncrements", "SchemePaths", "ReferencePaths", "draw_table", "coarsened",
           "problem_paths", "ObservableSpec", "AgainstPath", "SchemeValue", "Distance", "test_specs"]


class TableIncrements(Increments):
    """Increments read from a table ``(n, P, M)`` of one grid of step ``h`` from ``t0``."""

    name = "table"
    gaussian = True
    matched_moments = 10**9

    def __init__(self, table: Tensor, t0: float, h: float):
        self.table, self.t0, self.h = table, t0, h

    def sample(self, t0, t1, shape, generator, dtype, device):
        return self.table[round((t0 - self.t0) / self.h)]


def draw_table(generator: torch.Generator, steps: int, n: int, noise_dim: int, span: float,
               dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(steps, n, M)`` Gaussian increments of variance ``span/steps`` from ``generator``."""
    out = torch.empty(steps, n, noise_dim, dtype=dtype, device=device)
    return out.normal_(0.0, math.sqrt(span / steps), generator=generator)


def coarsened(table: Tensor, steps: int) -> Tensor:
    """The table summed to ``steps`` rows (each the sum of the ``len(table)/steps`` it spans)."""
    n, P, M = table.shape
    return table.reshape(steps, n // steps, P, M).sum(1)


@dataclass(frozen=True)
class _Problem:
    """What every producer integrates: the SDE from ``x0 (D,)`` over ``(t0, t1)``."""

    sde: SDE
    x0: Tensor
    t0: float
    t1: float
    noise_dim: int | None  # None: SAMPLED noise

    @property
    def sampled(self) -> bool:
        return self.sde.noise_kind is NoiseKind.SAMPLED

    def table(self, generator: torch.Generator, steps: int, n: int) -> Tensor | None:
        if self.noise_dim is None:
            return None
        return draw_table(generator, steps, n, self.noise_dim, self.t1 - self.t0,
                          self.x0.dtype, self.x0.device)

    def solve(self, solver: Solver, table: Tensor | None, steps: int, n: int,
              generator: torch.Generator) -> Tensor:
        """The final states ``(n, D)`` of ``steps`` steps of ``solver``."""
        h = (self.t1 - self.t0) / steps
        x0 = self.x0.unsqueeze(0).expand(n, -1).clone()
        increments = None if table is None else TableIncrements(coarsened(table, steps), self.t0, h)
        return solve(self.sde, x0, (self.t0, self.t1), dt=h, method=solver, generator=generator,
                     increments=increments).final


@dataclass(frozen=True)
class SchemePaths:
    """The scheme at ``steps`` steps on a table of ``table_steps`` rows; with ``attach``:

    * ``"brownian"``: the states ``[Y, W_t1 − W_t0]`` ``(1, P, D + M)`` (the test functions
      compare ``g(Y)`` with ``g`` of the exact solution on the same path);
    * ``"reference"``: ``[Y, Y_ref]`` ``(1, P, 2D)`` with ``Y_ref`` the reference solver at
      ``table_steps`` steps (a strong error against a fine solve);
    * ``None``: ``Y`` ``(1, P, D)``.
    """

    problem: _Problem
    solver: Solver
    steps: int
    table_steps: int
    attach: str | None = None
    reference_solver: Solver | None = None

    def __call__(self, n: int, generator: torch.Generator) -> Tensor:
        table = self.problem.table(generator, self.table_steps, n)
        y = self.problem.solve(self.solver, table, self.steps, n, generator)
        if self.attach == "brownian":
            assert table is not None
            y = torch.cat([y, table.sum(0)], dim=1)
        elif self.attach == "reference":
            assert self.reference_solver is not None
            y = torch.cat([y, self.problem.solve(self.reference_solver, table, self.table_steps,
                                                 n, generator)], dim=1)
        return y.unsqueeze(0)


@dataclass(frozen=True)
class ReferencePaths:
    """The reference solver at ``table_steps`` steps and, with ``levels > 1``, at ``2×``, ``4×``…
    the step on the same path, as a :class:`~smetool.PathSample` whose Richardson combination
    (weights of the solver's weak order ``order``) :func:`~smetool.weak_error` estimates when
    ``extrapolate``."""

    problem: _Problem
    solver: Solver
    table_steps: int
    levels: int
    order: float
    extrapolate: bool

    def __call__(self, n: int, generator: torch.Generator) -> PathSample:
        table = self.problem.table(generator, self.table_steps, n)
        states = [self.problem.solve(self.solver, table, self.table_steps // 2**level, n,
                                     generator).unsqueeze(0) for level in range(self.levels)]
        return PathSample(states[0], coarse=tuple(states[1:]),
                          solver_order=self.order if self.levels > 1 else None,
                          extrapolate=self.extrapolate and self.levels > 1)


def problem_paths(sde: SDE, x0: Tensor, t_span: tuple[float, float],
                  noise_dim: int | None) -> _Problem:
    """The problem the producers share (``x0`` ``(D,)`` on the device and dtype of the run)."""
    return _Problem(sde, x0, float(t_span[0]), float(t_span[1]), noise_dim)


# ------------------------------------------------------------------ test functions on them


@dataclass(frozen=True)
class ObservableSpec:
    """A test function with what is known of it: ``E g(X_T)`` and its exact value on a path."""

    name: str
    g: Callable[[Tensor], Tensor]
    expectation: float | None
    on_path: Callable[[float, Tensor], Tensor] | None


@dataclass(frozen=True)
class AgainstPath:
    """``g(Y) − v(t, W) + m`` on states ``[Y, W]``: the exact value on the same path as a control
    variate with known mean ``m`` (``m = 0`` when the mean is unknown: the error directly)."""

    g: Callable[[Tensor], Tensor]
    on_path: Callable[[float, Tensor], Tensor]
    t: float
    dim: int
    mean: float

    def __call__(self, z: Tensor) -> Tensor:
        return self.g(z[:, :self.dim]) - self.on_path(self.t, z[:, self.dim:]) + self.mean


@dataclass(frozen=True)
class SchemeValue:
    """``g`` of the first ``dim`` columns (the scheme's states alone)."""

    g: Callable[[Tensor], Tensor]
    dim: int

    def __call__(self, z: Tensor) -> Tensor:
        return self.g(z[:, :self.dim])


@dataclass(frozen=True)
class Distance:
    """``‖Y − X‖`` on states ``[Y, W]`` (``solution`` given: ``X = solution(t, W)``) or
    ``[Y, Y_ref]``."""

    dim: int
    t: float
    solution: Callable[[float, Tensor], Tensor] | None = None

    def __call__(self, z: Tensor) -> Tensor:
        y, rest = z[:, :self.dim], z[:, self.dim:]
        x = rest if self.solution is None else self.solution(self.t, rest)
        return torch.linalg.vector_norm(y - x, dim=1)


def test_specs(problem: LibraryProblem | None, dim: int, test_functions: Any,
               expectations: Mapping[str, float] | None, solution: Callable | None,
               t1: float, default_solution: Callable | None = None) -> list[ObservableSpec]:
    """The test functions with what is known of each: the mean, the value on a path
    (``solution``, the one given, overrides the observables' own; a user's function is
    evaluated on ``solution`` or else ``default_solution``, the problem's)."""
    if test_functions is None:
        if problem is not None:
            test_functions = [o.name for o in problem.observables]
        else:
            test_functions = {f"x{i + 1}{p}": Power(i, k) for i in range(dim)
                              for k, p in ((1, ""), (2, "^2"))}
    if isinstance(test_functions, str):
        test_functions = [test_functions]
    out = []
    if isinstance(test_functions, Mapping):
        for name, g in test_functions.items():
            if not callable(g):
                raise TypeError(f"`test_functions[{name!r}]` must be callable (states (P, D) -> "
                                f"(P,)); got {type(g).__name__}.")
            mean = None if expectations is None or name not in expectations else \
                float(expectations[name])
            exact = solution if solution is not None else default_solution
            out.append(ObservableSpec(str(name), g, mean,
                                      None if exact is None else Composed(g, exact)))
        return out
    if problem is None:
        raise TypeError("`test_functions` must be a dict {name: g} for an SDE that is not a "
                        f"library problem; got {test_functions!r}.")
    for name in test_functions:
        try:
            obs = problem.observable(str(name))
        except KeyError as exc:
            names = ", ".join(o.name for o in problem.observables)
            raise ValueError(f"`test_functions` must be observables of {problem.name} ({names}) "
                             f"or a dict of functions; got {name!r}.") from exc
        on_path = problem.path_value(obs.name)
        if solution is not None:
            on_path = Composed(obs.g, solution)
        out.append(ObservableSpec(obs.name, obs.g, float(obs.expectation(t1)), on_path))
    return out


@dataclass(frozen=True)
class Power:
    """``x[index] ** power``."""

    index: int
    power: int

    def __call__(self, x: Tensor) -> Tensor:
        return x[..., self.index] ** self.power


@dataclass(frozen=True)
class Composed:
    """``(t, W) -> g(solution(t, W))``."""

    g: Callable[[Tensor], Tensor]
    solution: Callable[[float, Tensor], Tensor]

    def __call__(self, t: float, W: Tensor) -> Tensor:
        return self.g(self.solution(t, W))
