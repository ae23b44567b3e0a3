"""``convergence``: the weak or strong order of a scheme on an SDE, in one call.

The errors come from the one Monte-Carlo pipeline (:func:`~smetool.weak_error`) and are judged by
the series test of :func:`~smetool.verify` (:func:`~smetool.judge_series`): the claim "order
``p``" fails when the errors demand a term of order ``p − s`` (``s = 1`` for weak errors, ``½``
for strong ones). The reference, best first (``reference="auto"``):

* ``"solution"`` — the exact solution on the scheme's own Brownian path, where the problem has
  one (:attr:`LibraryProblem.solution <smetool.exact.LibraryProblem>`, an observable's
  ``on_path``, or ``reference=`` a function ``(t, W_t) -> X_t``). A weak error is the mean of
  ``g(Y_h) − g(X_T)``: the exact solution is a control variate with known mean (coefficient 1),
  which cuts the variance from ``Var g(X)`` to ``O(h)``. A strong error is ``E‖Y_h − X_T‖``.
* ``"expectations"`` — closed-form ``E g(X_T)`` without a path (no variance reduction).
* ``"extrapolated"`` — the reference solver at ``h_ref``, ``2h_ref``, ``4h_ref`` on the same
  Brownian path as the scheme, combined with the Richardson weights of its weak order (Talay &
  Tubaro 1990), which removes its first two error terms; ``h_ref = min(dts)/4`` by default. Weak
  errors only.
* ``"fine"`` — the reference solver at ``h_ref = min(dts)/16`` alone; its own error is a bias
  common to every step (a strong error against it is off by up to ``E‖Y_ref − X‖``: for a
  strong order ½ reference, a quarter of the error at the smallest step — prefer the exact
  solution, or a smaller ``reference_dt``).

The reference solver defaults to the smetool scheme of the highest declared order for the SDE's
noise kind (Platen's weak order 2 for weak errors; Milstein, where it applies, for strong ones):
a scheme extrapolated against itself would converge to its own limit and could not show an
inconsistency.

References
----------
D. Talay, L. Tubaro, Stoch. Anal. Appl. 8(4) (1990) (extrapolation). P. E. Kloeden, E. Platen,
*Numerical Solution of SDEs*, Springer 1992, §9.7 (batch estimates of weak and strong errors).
C. Rackauckas, Q. Nie, DiffEqDevTools.jl (``test_convergence``, the one-call shape of this API).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..brownian import GaussianIncrements
from ..checks import check_confidence, check_distinct_positive, check_path_count, whole_steps
from ..exact import LibraryProblem
from ..integrate import as_solver, checked_diffusion
from ..montecarlo import ExactReference, weak_error
from ..noise import brownian_dim
from ..sde import SDE, NoiseKind, as_sde
from ..solvers import (
    EulerMaruyama,
    Milstein,
    PlatenWeak2,
    SmallNoiseHeun,
    Solver,
    UnsupportedError,
)
from ..stats import OrderFit, SeriesVerdict, WeakOrderWarning, fit_order, judge_series
from .convergence_paths import (
    AgainstPath,
    Distance,
    ObservableSpec,
    ReferencePaths,
    SchemePaths,
    SchemeValue,
    problem_paths,
    test_specs,
)
from .convergence_result import ConvergenceResult

__all__ = ["convergence", "REFERENCES"]

REFERENCES = ("auto", "solution", "expectations", "extrapolated", "fine")
"""The named references of :func:`convergence`."""

STRONG = "E|Y-X|"
"""The name of the strong error in a result."""


def _reference_solver(kind: str, sde: SDE, given: Solver | str | None) -> Solver:
    if given is not None:
        return as_solver(given)
    usable = []
    for candidate in (PlatenWeak2(), Milstein(), SmallNoiseHeun(), EulerMaruyama()):
        try:
            candidate.check(sde, GaussianIncrements())
        except UnsupportedError:
            continue
        order = candidate.strong_order_for(sde.noise_kind) if kind == "strong" else \
            candidate.weak_order_for(sde.noise_kind)
        if order is not None:
            usable.append((order, candidate))
    # the highest declared order; ties keep the order above (Platen, Milstein, Heun, Euler)
    return max(usable, key=lambda pair: pair[0])[1] if usable else EulerMaruyama()


def _resolve_reference(reference: Any, kind: str, tests: list[ObservableSpec], sampled: bool,
                       has_solution: bool) -> str:
    if not isinstance(reference, str) or reference not in REFERENCES:
        raise ValueError(f"`reference` must be one of {', '.join(REFERENCES)}, a solution "
                         f"(t, W_t) -> X_t or a dict of expectations; got {reference!r}.")
    if kind == "strong":
        if sampled:
            raise ValueError("strong errors need a Brownian path; noise_kind='sampled' has none "
                             "(use kind='weak').")
        if reference == "auto":
            return "solution" if has_solution else "fine"
        if reference not in ("solution", "fine"):
            raise ValueError(f"`reference` must be 'solution' or 'fine' for strong errors; got "
                             f"{reference!r}.")
        if reference == "solution" and not has_solution:
            raise ValueError("reference='solution' needs the exact solution as a function of "
                             "the Brownian path; this problem has none (use reference='fine', or "
                             "pass reference=solution(t, W_t)).")
        return reference
    on_path = not sampled and all(t.on_path is not None for t in tests)
    means = all(t.expectation is not None for t in tests)
    if reference == "auto":
        return "solution" if on_path else "expectations" if means else "extrapolated"
    if reference == "solution" and not on_path:
        missing = [t.name for t in tests if t.on_path is None]
        raise ValueError(f"reference='solution' needs every test function's exact value on the "
                         f"Brownian path; {', '.join(missing) or 'SAMPLED noise'} has none (use "
                         "reference='expectations' or 'extrapolated').")
    if reference == "expectations" and not means:
        missing = [t.name for t in tests if t.expectation is None]
        raise ValueError(f"reference='expectations' needs E g(X_T) for every test function; "
                         f"{', '.join(missing)} has none (pass expectations={{name: value}}).")
    return reference


def convergence(
    sde: SDE | LibraryProblem | Any,
    x0: Any = None,
    method: Solver | str | None = None,
    dts: Sequence[float] | None = None,
    *,
    test_functions: Mapping[str, Callable[[Tensor], Tensor]] | Sequence[str] | None = None,
    reference: str | Callable[[float, Tensor], Tensor] | Mapping[str, float] = "auto",
    paths: int = 10_000,
    kind: str = "weak",
    order: float | None = None,
    t_span: tuple[float, float] | None = None,
    reference_method: Solver | str | None = None,
    reference_dt: float | None = None,
    false_failure: float = 0.01,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    chunk_size: int | None = None,
    progress: bool = False,
    executor: Any = None,
) -> ConvergenceResult:
    """Measure a scheme's weak or strong errors at several steps and judge its declared order.

    Parameters
    ----------
    sde : SDE, torchsde-style object, or LibraryProblem
        A library problem (:mod:`smetool.exact`, e.g. ``library_problem("gbm")``) brings its
        initial state, span, observables with their expectations and its exact solution.
    x0 : array-like, (D,), optional
        The initial state (default: the problem's).
    method : Solver or str
        The scheme (``"euler"``, ``"milstein"``, ``"platen"``, ``"heun"`` or a
        :class:`~smetool.Solver`, your own included).
    dts : sequence of float
        Steps, each dividing the span into whole steps (default ``T/4 … T/32``; strong
        ``T/16 … T/256``).
    test_functions : dict of str to callable, or sequence of str, optional
        ``g: (P, D) -> (P,)``, or names of the problem's observables (default: all of them; for
        a plain SDE ``x_i`` and ``x_i²``). Ignored for strong errors.
    reference : str, callable or dict
        ``"auto"``, ``"solution"``, ``"expectations"``, ``"extrapolated"``, ``"fine"`` (the
        module docstring), an exact solution ``(t, W_t (P, M)) -> X_t (P, D)``, or a dict of
        expectations ``E g(X_T)``.
    paths : int
        Samples per step.
    kind : {"weak", "strong"}
    order : float, optional
        The claimed order (default: the method's declared weak or strong order for the SDE's
        noise kind).
    t_span : (float, float), optional
        Default: the problem's, else ``(0, 1)``.
    reference_method : Solver or str, optional
        The solver of the ``"extrapolated"`` and ``"fine"`` references (default: the module's
        rule).
    reference_dt : float, optional
        Their finest step (default ``min(dts)/4``; ``"fine"`` ``/16``); it must
        divide every step (and for ``"extrapolated"`` the span into a multiple of 4 steps).
    false_failure : float
        The probability that a right order fails (split over the test functions: Bonferroni).
    seed, dtype, device, chunk_size, progress, executor
        As for :func:`~smetool.weak_error` (same seed, same numbers, whatever the chunking).

    Returns
    -------
    ConvergenceResult

    Raises
    ------
    ValueError
        Bad steps, spans, orders or references, a reference the problem cannot give, a method
        without a declared order for this noise kind — before any path is simulated.
    UnsupportedError
        The method cannot integrate this SDE.

    Examples
    --------
    >>> from smetool import convergence
    >>> from smetool.exact import library_problem
    >>> r = convergence(library_problem("gbm"), method="euler", dts=[1/8, 1/16, 1/32, 1/64],
    ...                 test_functions=["x"], paths=20_000)
    >>> r.verdict.value, r.reference
    ('pass', 'exact solution on the same Brownian path (control variate)')
    """
    started = time.perf_counter()
    problem = sde if isinstance(sde, LibraryProblem) else None
    the_sde = as_sde(problem.sde if problem is not None else sde)
    if kind not in ("weak", "strong"):
        raise ValueError(f"`kind` must be 'weak' or 'strong'; got {kind!r}.")
    if kind == "strong" and the_sde.noise_kind is NoiseKind.SAMPLED:
        raise ValueError("strong errors need a Brownian path; noise_kind='sampled' has none "
                         "(use kind='weak').")
    solver = as_solver(method)
    solver.check(the_sde, GaussianIncrements())
    if x0 is None:
        if problem is None:
            raise ValueError("`x0` is needed for an SDE that is not a library problem.")
        x0 = problem.x0
    start = torch.as_tensor(x0, dtype=dtype, device=device).reshape(-1)
    if not bool(torch.isfinite(start).all()):
        raise ValueError(f"`x0` must be finite; got {start.tolist()}.")
    D = start.numel()
    t0, t1 = (float(t) for t in (t_span or (problem.t_span if problem else (0.0, 1.0))))
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
        raise ValueError(f"`t_span` must be (t0, t1) with finite t0 < t1; got ({t0}, {t1}).")
    if problem is not None and (
            len(problem.x0) != D or t0 != problem.t_span[0]
            or not all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
                       for a, b in zip(start.tolist(), problem.x0))):
        # the problem's solution and expectations are those of its own initial state and time
        raise ValueError(f"{problem.name}'s exact references hold from x0 = {list(problem.x0)} "
                         f"at t0 = {problem.t_span[0]:g}; got x0 = {start.tolist()}, t0 = {t0:g} "
                         "(build the problem with the initial state you want, e.g. "
                         "library_problem(name, x0=…)).")
    span = t1 - t0
    strong = kind == "strong"
    if dts is None:
        dts = [span * 2.0**-k for k in (range(4, 9) if strong else range(2, 6))]
    hs = check_distinct_positive(dts, "dts")
    if len(hs) < 3:
        raise ValueError(f"`dts` must hold at least 3 steps (the series test needs them); got "
                         f"{len(hs)}.")
    n_steps = {h: whole_steps(span, h, span_name="t1 - t0", step_name="dts") for h in hs}
    declared = solver.strong_order_for(the_sde.noise_kind) if strong else \
        solver.weak_order_for(the_sde.noise_kind)
    claimed = declared if order is None else order
    if claimed is None:
        raise ValueError(f"{solver!r} declares no strong order for noise_kind="
                         f"{the_sde.noise_kind.value!r}; give `order` or use kind='weak'.")
    spacing = 0.5 if strong else 1.0
    check_confidence(false_failure, "false_failure")
    n_paths = check_path_count(paths, "paths")
    sampled = the_sde.noise_kind is NoiseKind.SAMPLED
    M = None if sampled else brownian_dim(the_sde, checked_diffusion(the_sde, t0, start[None]), D)

    solution = reference if callable(reference) and not isinstance(reference, str) else None
    if solution is None and problem is not None:
        solution = problem.solution
    given_means = dict(reference) if isinstance(reference, Mapping) else None
    tests = [] if strong else test_specs(problem, D, test_functions, given_means,
                                         reference if callable(reference) else None, t1,
                                         solution)
    named = reference if isinstance(reference, str) else (
        "solution" if callable(reference) else "expectations")
    ref = _resolve_reference(named, kind, tests, sampled, solution is not None)

    shared = problem_paths(the_sde, start, (t0, t1), M)
    ref_solver = _reference_solver(kind, the_sde, reference_method)
    ref_order = ref_solver.weak_order_for(the_sde.noise_kind)
    n_ref = None
    if ref in ("extrapolated", "fine"):
        factor = 4 if ref == "extrapolated" else 16
        h_ref = min(hs) / factor if reference_dt is None else float(reference_dt)
        n_ref = whole_steps(span, h_ref, span_name="t1 - t0", step_name="reference_dt")
        bad = [h for h, n in n_steps.items() if n_ref % n]
        if bad or (ref == "extrapolated" and n_ref % 4):
            raise ValueError(f"`reference_dt` ({h_ref:g}) must divide every step of `dts`"
                             + (" and the span into a multiple of 4 steps" if ref ==
                                "extrapolated" else "") + f"; got {n_ref} steps, dts "
                             f"{sorted(bad or hs)}.")
    crn = False
    refs: Any
    test_map: dict[str, Callable[[Tensor], Tensor]]
    if strong:
        test_map = {STRONG: Distance(D, t1, solution if ref == "solution" else None)}
        approx = {h: SchemePaths(shared, solver, n, n if ref == "solution" else n_ref,  # type: ignore[arg-type]
                                 "brownian" if ref == "solution" else "reference", ref_solver)
                  for h, n in n_steps.items()}
        refs = ExactReference({STRONG: 0.0})
        what = ("exact solution on the same Brownian path" if ref == "solution" else
                f"{ref_solver.name} at h = {span / n_ref:g} on the same Brownian path")  # type: ignore[operator]
    elif ref == "solution":
        test_map = {}
        for t in tests:
            assert t.on_path is not None
            test_map[t.name] = AgainstPath(t.g, t.on_path, t1, D, t.expectation or 0.0)
            test_map[f"plain:{t.name}"] = SchemeValue(t.g, D)
        approx = {h: SchemePaths(shared, solver, n, n, "brownian") for h, n in n_steps.items()}
        refs = ExactReference({**{t.name: t.expectation or 0.0 for t in tests},
                               **{f"plain:{t.name}": t.expectation or 0.0 for t in tests}})
        what = "exact solution on the same Brownian path (control variate)"
    elif ref == "expectations":
        test_map = {t.name: t.g for t in tests}
        approx = {h: SchemePaths(shared, solver, n, n) for h, n in n_steps.items()}
        refs = ExactReference({t.name: t.expectation for t in tests})
        what = "exact expectations"
    else:
        levels = 3 if ref == "extrapolated" else 1
        test_map = {t.name: t.g for t in tests}
        approx = {h: SchemePaths(shared, solver, n, n_ref) for h, n in n_steps.items()}  # type: ignore[arg-type]
        one = ReferencePaths(shared, ref_solver, n_ref, levels, ref_order, ref == "extrapolated")  # type: ignore[arg-type]
        refs = {h: one for h in hs}
        crn = True
        what = (f"{ref_solver.name} at h = {span / n_ref:g}"  # type: ignore[operator]
                + (", 2h, 4h, Richardson-extrapolated," if levels > 1 else "")
                + " on the same Brownian path")

    table = weak_error(refs, approx, test_map, n_paths, steps=hs, common_random_numbers=crn,
                       seed=seed, chunk_size=chunk_size, progress=progress, device=device,
                       dtype=dtype, executor=executor, labels=(solver.name, what),
                       tag=f"convergence:{solver.name}:{ref}", step_name="h")
    names = [STRONG] if strong else [t.name for t in tests]
    k_of = {n: i for i, n in enumerate(table.names)}
    errors = [table.errors[k_of[n], -1].tolist() for n in names]
    stderrs = [table.stderrs[k_of[n], -1].tolist() for n in names]
    if ref == "solution" and not strong:
        reduction = [[(p / s) ** 2 if s > 0 else math.inf for p, s in
                      zip(table.stderrs[k_of[f"plain:{n}"], -1].tolist(), se)]
                     for n, se in zip(names, stderrs)]
    elif crn and table.crn_factor is not None:
        reduction = [table.crn_factor[k_of[n], -1].tolist() for n in names]
    else:
        reduction = [[1.0] * len(hs) for _ in names]
    alpha = float(false_failure) / len(names)
    verdicts: dict[str, SeriesVerdict] = {}
    fits: dict[str, OrderFit | None] = {}
    for n, e, se in zip(names, errors, stderrs):
        verdicts[n] = judge_series(hs, e, [max(s, 1e-300) for s in se], claimed, alpha=alpha,
                                   spacing=spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WeakOrderWarning)
            try:
                fits[n] = fit_order(hs, e, se)
            except ValueError:
                fits[n] = None
    settings = {"t_span": (t0, t1), "x0": start.tolist(), "seed": int(seed),
                "reference": ref, "reference_method": ref_solver.name if n_ref else None,
                "reference_dt": span / n_ref if n_ref else None,
                "declared_order": declared, "false_failure": float(false_failure),
                "alpha": alpha, "dtype": str(dtype).removeprefix("torch."),
                "device": str(table.device.get("device", device)),
                "noise_kind": the_sde.noise_kind.value}
    return ConvergenceResult(
        problem.name if problem is not None else repr(the_sde), solver.name, kind,
        float(claimed), spacing, tuple(hs), tuple(names),
        tuple(tuple(e) for e in errors), tuple(tuple(s) for s in stderrs),
        tuple(tuple(r) for r in reduction), verdicts, fits, what, n_paths,
        time.perf_counter() - started, settings, table)
