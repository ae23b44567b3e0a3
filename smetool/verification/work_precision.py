"""``work_precision``: error against computing time for several schemes on one problem (the
work–precision diagram of DiffEqDevTools' ``WorkPrecisionSet``).

Each method runs :func:`~smetool.convergence` (errors with standard errors, and its verdict) and,
separately, is timed: the median wall-clock seconds of :func:`~smetool.solve` on
``timing_paths`` paths at each step, over ``repeats`` runs after one warm-up. The Monte-Carlo run is
not timed (its cost includes the reference and the statistics). Timings depend on the machine and
its load: compare methods of one diagram, not diagrams of different machines.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checks import check_positive_int
from ..exact import LibraryProblem
from ..integrate import as_solver, solve
from ..jsonutil import json_safe, strict_json
from ..plotting import pyplot, tidy_log_axis
from ..sde import as_sde
from ..solvers import Solver
from .convergence import convergence
from .convergence_result import ConvergenceResult

__all__ = ["work_precision", "WorkPrecision"]


@dataclass(frozen=True)
class WorkPrecision:
    """Errors and timings of several methods on one problem.

    Attributes
    ----------
    problem : str
    kind : {"weak", "strong"}
    results : dict of str to ConvergenceResult
        Per method (its name), the convergence run with its errors and verdict.
    seconds : dict of str to tuple of float
        Per method, the median seconds of one solve of ``timing_paths`` paths at each step.
    timing_paths : int
    repeats : int
    """

    problem: str
    kind: str
    results: dict[str, ConvergenceResult]
    seconds: dict[str, tuple[float, ...]]
    timing_paths: int
    repeats: int
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """Per method and step: the seconds, the error of each test function with its standard
        error, and the method's verdict."""
        lines = [f"work-precision on {self.problem} ({self.kind} errors; seconds: median of "
                 f"{self.repeats} solves of {self.timing_paths} paths)"]
        for name, result in self.results.items():
            lines.append(f"{name} (order {result.order:g}: {result.verdict.value})")
            lines.append(f"{'h':>10} {'seconds':>10} " + " ".join(
                f"{t + ' error':>24}" for t in result.names))
            for j, h in enumerate(result.steps):
                cells = " ".join(f"{result.errors[k][j]:>+12.3e} ± {result.stderrs[k][j]:<9.2e}"
                                 for k in range(len(result.names)))
                lines.append(f"{h:>10.4g} {self.seconds[name][j]:>10.3g} {cells}")
        return "\n".join(lines)

    def plot(self, path: str | None = None, *, test_function: str | None = None,
             ax: Any = None) -> Any:
        """Log–log: ``|error| ± 2 SE`` of one test function (default the first) against the
        seconds, one line per method, each point labelled by nothing but its position (the steps
        are in :meth:`table`). Returns the figure."""
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
        else:
            fig = ax.figure
        first = next(iter(self.results.values()))
        name = test_function or first.names[0]
        for method, result in self.results.items():
            if name not in result.names:
                raise KeyError(f"`test_function` must be one of {', '.join(result.names)}; got "
                               f"{name!r}.")
            _, e, se = result.series(name)
            secs = np.asarray(self.seconds[method])
            y = np.abs(e)
            ax.errorbar(secs, y, yerr=[np.where(y > 2 * se, 2 * se, 0.9 * y), 2 * se], fmt="o-",
                        capsize=3, label=f"{method} (order {result.order:g})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"seconds per solve of {self.timing_paths} paths")
        ax.set_ylabel("E‖Y(T) − X(T)‖" if self.kind == "strong" else f"|weak error| of {name}")
        ax.set_title(f"work–precision: {self.problem}", fontsize="medium")
        ax.grid(True, which="major", alpha=0.3)
        tidy_log_axis(ax.xaxis)
        tidy_log_axis(ax.yaxis)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        if path is not None:
            fig.savefig(path, bbox_inches="tight", dpi=120)
        return fig

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_safe({"problem": self.problem, "kind": self.kind,
                          "timing_paths": self.timing_paths, "repeats": self.repeats,
                          "settings": self.settings,
                          "methods": {m: {"seconds": list(self.seconds[m]), **r.to_dict()}
                                      for m, r in self.results.items()}})

    def to_json(self, path: str | None = None) -> str:
        """Strict JSON of :meth:`to_dict` (written to ``path`` when given)."""
        return strict_json(self.to_dict(), path)


def _time_solve(sde: Any, x0: torch.Tensor, t_span: tuple[float, float], dt: float,
                method: Solver, repeats: int, seed: int) -> float:
    times = []
    for r in range(repeats + 1):  # the first run warms caches and the allocator; not counted
        start = time.perf_counter()
        solve(sde, x0, t_span, dt=dt, method=method, generator=seed + r)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def work_precision(sde: Any, x0: Any = None,
                   methods: Sequence[Solver | str] = ("euler", "milstein", "platen"),
                   dts: Sequence[float] | Mapping[str, Sequence[float]] | None = None, *,
                   timing_paths: int | None = None, repeats: int = 3, **options: Any
                   ) -> WorkPrecision:
    """Run :func:`~smetool.convergence` for each method and time its solves: the data of a
    work–precision diagram.

    Parameters
    ----------
    sde, x0
        As for :func:`~smetool.convergence` (a library problem brings its initial state).
    methods : sequence of Solver or str
        The schemes (distinct names).
    dts : sequence of float, or dict of method name to sequence, optional
        The steps, shared or per method (default: :func:`~smetool.convergence`'s).
    timing_paths : int, optional
        Paths of each timed solve (default: the ``paths`` of the run, else 10,000).
    repeats : int
        Timed solves per step (their median is reported).
    **options
        Passed to :func:`~smetool.convergence` (``test_functions``, ``reference``, ``paths``,
        ``kind``, ``seed``, ``device``, …).

    Returns
    -------
    WorkPrecision
    """
    solvers = [as_solver(m) for m in methods]
    names = [s.name for s in solvers]
    if not solvers or len(set(names)) != len(names):
        raise ValueError(f"`methods` must be distinct solvers; got {names}.")
    repeats = check_positive_int(repeats, "repeats")
    timing = check_positive_int(timing_paths if timing_paths is not None
                                else options.get("paths", 10_000), "timing_paths")
    results: dict[str, ConvergenceResult] = {}
    seconds: dict[str, tuple[float, ...]] = {}
    problem = sde if isinstance(sde, LibraryProblem) else None
    for solver in solvers:
        steps = dts.get(solver.name) if isinstance(dts, Mapping) else dts
        result = convergence(sde, x0, solver, steps, **options)
        results[solver.name] = result
        t_span = tuple(result.settings["t_span"])
        start = torch.as_tensor(result.settings["x0"], dtype=options.get("dtype", torch.float64),
                                device=options.get("device", "cpu"))
        the_sde = as_sde(problem.sde if problem is not None else sde)
        seconds[solver.name] = tuple(
            _time_solve(the_sde, start.unsqueeze(0).repeat(timing, 1), t_span, h, solver,
                        repeats, int(options.get("seed", 0))) for h in result.steps)
    first = next(iter(results.values()))
    return WorkPrecision(first.problem, first.kind, results, seconds, timing, repeats,
                         {"threads": torch.get_num_threads(),
                          "timing": "median wall-clock seconds of smetool.solve after a warm-up"})
