"""``verify()``: the weak-error convergence test of an SME against its discrete algorithm.

``verify`` = probe the plug-in + :func:`~smetool.weak_error` over the learning rates (the discrete
algorithm as the approximation, the SME as the reference) + :func:`~smetool.fit_order` + report.
For each learning rate ``lr`` the discrete algorithm runs ``T / lr`` steps on ``N`` paths and the
SME is solved on ``N`` independent paths over ``[0, T]`` with step ``h = lr / r`` and, on the same
Brownian path, ``2h`` (:func:`~smetool.integrate.solve_coupled`): the coupled difference measures
the SME solver's own error, reported next to the weak error.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..algorithms.base import Algorithm, NegativeControl
from ..bibliography import unique_references
from ..checks import check_distinct_positive, check_positive, whole_steps
from ..device import format_bytes
from ..integrate import as_solver
from ..montecarlo import (
    MonteCarloOptions,
    NonFiniteChunkError,
    TestFunction,
    VarianceReduction,
    WeakErrorTable,
    weak_error,
)
from ..montecarlo.control import as_variance_reduction
from ..montecarlo.engine import usable_memory
from ..sde import SDE, NoiseFree
from ..solvers import SmallNoiseHeun, Solver
from ..stats import OrderFit, WeakOrderWarning, judge_order
from .probe import probe_control_variates, probe_plugin
from .producers import AlgorithmProducer, CoupledSMEProducer, FlowProducer, supports_tangent
from .result import ControlResult, VerifyResult

__all__ = ["verify", "check_learning_rates", "DEFAULT_MAX_CHUNK"]

DEFAULT_MAX_CHUNK = 20_000
"""The largest automatic chunk of :func:`verify` on the CPU (``max_chunk`` changes it; on CUDA
only the memory bounds a chunk)."""


def check_learning_rates(lrs: Sequence[float], horizon: float, name: str = "algorithm") -> list[int]:
    """Validate learning rates against a horizon; return the step counts ``T / lr``.

    Raises
    ------
    ValueError
        Fewer than two learning rates, a non-positive or repeated one, or a horizon that is not a
        whole multiple of one of them.
    """
    horizon = check_positive(horizon, "horizon", name)
    values = check_distinct_positive(lrs, "lrs", name, minimum=2)
    return [whole_steps(horizon, lr, span_name="horizon", step_name="lr", owner=name)
            for lr in values]


def verify(
    algorithm: Algorithm,
    lrs: Sequence[float],
    n_paths: int | MonteCarloOptions,
    *,
    horizon: float,
    order: int = 1,
    test_functions: Mapping[str, TestFunction] | None = None,
    steps_per_lr: int = 4,
    method: Solver | str | None = None,
    variance_reduction: VarianceReduction | str | None = None,
    extrapolate: bool | None = None,
    controls: bool = True,
    min_snr: float = 5.0,
    confidence: float = 0.95,
    settings: Mapping[str, Any] | None = None,
    **option_fields: Any,
) -> VerifyResult:
    """Measure the weak error of an SME against its discrete algorithm and fit the weak order.

    Parameters
    ----------
    algorithm : Algorithm
        Any plug-in meeting :class:`smetool.algorithms.Algorithm` (dropout, SGD, …).
    lrs : sequence of float
        Learning rates ``ε`` (at least two); ``horizon / ε`` must be whole for each.
    n_paths : int or MonteCarloOptions
        Paths per side and learning rate, with the other Monte-Carlo options as keywords
        (``seed``, ``chunk_size``, ``dtype``, ``device``, ``checkpoint``, ``progress``,
        ``executor``), or all of them as a :class:`~smetool.MonteCarloOptions`. Chunk ``c`` of
        learning rate ``i`` draws from ``chunk_seed(seed, i, c, 0)`` (discrete) and
        ``chunk_seed(seed, i, c, 1)`` (SME). A chunk holds every path when they fit in the
        device's memory (measured on a one-step probe), on the CPU at most 20,000 unless
        ``chunk_size`` or ``max_chunk`` say otherwise; a method that cannot fit one path (Platen
        on a wide dropout factor) is refused before anything runs. With a ``checkpoint`` folder,
        learning rate ``i`` is checkpointed in ``step{i}.pt``: a killed run restarted with the
        same arguments resumes and gives the same numbers; a checkpoint of other arguments (or
        of another device, GPU model, torch or CUDA version) is refused.
    horizon : float
        ``T`` in SDE time (``T / ε`` steps of the algorithm).
    order : int
        The SME order to test (one of ``algorithm.sme_orders``).
    test_functions : dict, optional
        Name → ``g: (P, D) -> (P,)``; default ``algorithm.test_functions()``.
    steps_per_lr : int
        ``r``, an even number ≥ 2: the SME is solved at ``h = ε / r`` and, coupled, at ``2h`` to
        measure the solver's own error.
    method : Solver or str, default SmallNoiseHeun()
        The SME solver. Its error ``O(h² + ε h)`` for SMEs is ``O(ε²/r)``, below an order-1
        SME's error for small ``ε``; the measured solver error is reported per row.
    variance_reduction : {"quadratic", "tangent", "none"}, optional
        The small-noise control variates subtracted on both sides (:mod:`smetool.montecarlo.control`):
        ``"tangent"`` the linear one, ``"quadratic"`` also the quadratic one (where the plug-in
        gives the exact step covariance; else the linear one on that side). Default: the best
        the plug-in supports — the discrete side needs a :class:`~smetool.algorithms.SeparableNoise`
        plug-in, the SME side Brownian (not sampled) noise. The control variates have mean exactly
        zero; their coefficient is fitted on the same paths (bias ``O(1/N)``, far below the
        standard error), so they never cost variance; the achieved factor is reported per row.
    extrapolate : bool, optional
        Use the Richardson (Talay–Tubaro) combination of the SME at ``h`` and ``2h`` as its
        estimate, ``g_h + (g_h − g_2h)/(2^p − 1)`` for a solver of weak order ``p``: it removes
        the solver's leading error (for the small-noise Heun scheme ``O(ε h)``, of the size of an
        order-2 SME's own error) at the cost of one coarse run the check makes anyway. Default:
        for order-2 checks. The solver-error column then shows the error removed.
    controls : bool
        Also run the plug-in's negative controls (:meth:`Algorithm.negative_controls`): wrong SMEs
        on the same seed as the SME, at two SME steps per learning rate (their errors are of
        lower order, so their solver error does not matter), and report whether each is
        rejected.
    min_snr : float
        Errors below ``min_snr`` standard errors are left out of the fit, and a verdict passes
        only when every error reaches it (default 5).
    confidence : float
        Of the order's confidence interval.
    settings : dict, optional
        Extra information stored in the result (e.g. the problem's description).
    **option_fields
        Fields of :class:`~smetool.MonteCarloOptions` when ``n_paths`` is a count.

    Returns
    -------
    VerifyResult
        With the fit and the verdict (:func:`~smetool.stats.judge_order`: pass with power, fail
        or inconclusive) per test function, and the negative controls.

    Raises
    ------
    ValueError, TypeError
        Bad learning rates, horizon, order, path count or test functions, naming the plug-in.
    PluginError
        The plug-in's own code raised; the message names it.
    NonFiniteChunkError
        A side diverged; the message names the learning rate, the chunk and the paths per side,
        and the chunks finished before it stay in the checkpoint.

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I", JMLR 20 (2019) — the weak-approximation statement tested here.
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024 — the dropout SME.
    """
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"`algorithm` must implement smetool.algorithms.Algorithm (initial_state, step, sme, "
            f"test_functions); got {type(algorithm).__name__}."
        )
    name = algorithm.name
    steps = check_learning_rates(lrs, horizon, name)
    lrs = tuple(float(lr) for lr in lrs)
    if order not in algorithm.sme_orders:
        raise ValueError(f"{name}: `order` must be one of {algorithm.sme_orders}; got {order!r}.")
    if isinstance(steps_per_lr, bool) or int(steps_per_lr) != steps_per_lr or steps_per_lr < 2 \
            or steps_per_lr % 2:
        raise ValueError(f"{name}: `steps_per_lr` must be an even integer ≥ 2; got {steps_per_lr!r}.")
    try:
        opts = MonteCarloOptions.of(n_paths, **option_fields)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if opts.max_chunk is None and opts.where.type == "cpu":
        opts = opts.replace(max_chunk=DEFAULT_MAX_CHUNK)
    opts = opts.with_device()
    solver = SmallNoiseHeun() if method is None else as_solver(method)
    tests = dict(algorithm.test_functions() if test_functions is None else test_functions)
    if not tests:
        raise ValueError(f"{name}: `test_functions` must name at least one test function; got none.")
    start = time.perf_counter()

    probes = {lr: probe_plugin(algorithm, name, lr, order, solver, tests, opts.dtype,
                               opts.where) for lr in lrs}
    _check_step_memory(name, solver, probes[lrs[0]], algorithm, opts)
    vr = _variance_reduction(variance_reduction, algorithm, probes[lrs[0]])
    use_extrapolation = order >= 2 if extrapolate is None else bool(extrapolate)
    if vr is not VarianceReduction.NONE:
        for lr in lrs:
            probe_control_variates(algorithm, name, lr, opts.dtype, opts.where)
    discrete, sme = {}, {}
    control_specs: dict[str, NegativeControl] = {}
    control_producers: dict[str, dict[float, Any]] = {}
    for lr, k_steps in zip(lrs, steps):
        h = lr / steps_per_lr
        discrete[lr] = AlgorithmProducer(algorithm, lr, k_steps, opts.dtype, opts.where, vr)
        sme[lr] = CoupledSMEProducer(algorithm, probes[lr], solver, float(horizon), h,
                                     opts.dtype, opts.where, vr, use_extrapolation)
        for control in (algorithm.negative_controls(lr, order) if controls else ()):
            control_specs.setdefault(control.name, control)
            control_producers.setdefault(control.name, {})[lr] = _control_producer(
                algorithm, control, solver, float(horizon), lr / 2, opts.dtype, opts.where, vr)
    tag = (f"verify {name} order={int(order)} horizon={float(horizon)!r} "
           f"steps_per_lr={int(steps_per_lr)} method={solver.name} vr={vr.value} "
           f"extrapolate={use_extrapolation} {algorithm!r}")
    try:
        table = weak_error(sme, discrete, tests, opts, steps=lrs, times=(float(horizon),),
                           controls={c: control_producers[c] for c in control_specs},
                           tag=tag, labels=("discrete", "SME"), step_name="lr")
    except NonFiniteChunkError as exc:
        raise NonFiniteChunkError(
            exc.chunk, exc.size, exc.counts,
            f"{name}: {exc.context} (horizon T = {float(horizon):g}; a smaller learning rate, or "
            "for the SME a larger steps_per_lr, may help)") from None

    fits, unfitted = _fits(table, tests, min_snr, confidence)
    verdicts = {t: judge_order(fits.get(t), order, min_snr=min_snr, why_unfitted=unfitted.get(t, ""))
                for t in tests}
    control_results = {}
    for cname, control in control_specs.items():
        ctable = table.controls[cname]
        cfits, cunfitted = _fits(ctable, tests, min_snr, confidence)
        control_results[cname] = ControlResult(
            name=cname, why=control.why, expected_slope=control.slope, fits=cfits,
            verdicts={t: judge_order(cfits.get(t), order, min_snr=min_snr,
                                     why_unfitted=cunfitted.get(t, "")) for t in tests},
            weak_errors=ctable)
    info = {"seed": opts.seed, "dtype": str(opts.dtype).replace("torch.", ""),
            "device": opts.where.type, "min_snr": min_snr, "confidence": confidence,
            "variance_reduction": vr.value, "extrapolated": use_extrapolation,
            "device_info": table.device}
    info.update(dict(settings or {}))
    return VerifyResult(
        algorithm=name, order=int(order), horizon=float(horizon), lrs=lrs,
        n_paths=opts.n_paths, steps_per_lr=int(steps_per_lr), method=solver.name,
        weak_errors=table, fits=fits, seconds=time.perf_counter() - start, settings=info,
        unfitted=unfitted, solver_order=float(solver.weak_order),
        references=unique_references([solver.references, algorithm.cited_references()]),
        verdicts=verdicts, controls=control_results,
    )


def _check_step_memory(name: str, solver: Solver, sde: SDE, algorithm: Algorithm,
                       opts: MonteCarloOptions) -> None:
    """Refuse, before anything runs, a solver whose step cannot fit one path in memory (its
    :meth:`~smetool.solvers.Solver.step_memory` bound, e.g. Platen's ``4 M² D`` numbers)."""
    x = algorithm.initial_state(1, dtype=opts.dtype, device=opts.where)
    M = sde.noise_dim or x.shape[1]
    need = solver.step_memory(sde.noise_kind, x.shape[1], int(M), x.element_size())
    budget = usable_memory(opts.where, opts.memory_budget)
    if need and budget is not None and need > budget:
        raise ValueError(
            f"{name}: method {solver.name!r} needs ≥ {format_bytes(need)} per path for this SME "
            f"(D = {x.shape[1]}, M = {M}), more than the {format_bytes(budget)} usable on "
            f"{opts.where.type}; use method='heun' or 'euler' (matrix-free noise).")


def _fits(table: WeakErrorTable, tests: Mapping[str, TestFunction], min_snr: float,
          confidence: float) -> tuple[dict[str, OrderFit], dict[str, str]]:
    """The order fit of every test function at the horizon, or why there is none."""
    fits: dict[str, OrderFit] = {}
    unfitted: dict[str, str] = {}
    for tname in tests:
        try:
            with warnings.catch_warnings():
                # Flagged points and sign changes are reported by the verdicts and the table.
                warnings.simplefilter("ignore", WeakOrderWarning)
                fits[tname] = table.fit(tname, min_snr=min_snr, confidence=confidence)
        except ValueError as exc:  # too few resolved points: report it, keep the error table
            unfitted[tname] = str(exc)
    return fits, unfitted


def _variance_reduction(value: VarianceReduction | str | None, algorithm: Algorithm,
                        sde: SDE) -> VarianceReduction:
    """The requested control variates, or the best the plug-in supports."""
    discrete, sme = supports_tangent(algorithm, sde)
    if value is None:
        return VarianceReduction.QUADRATIC if (discrete or sme) else VarianceReduction.NONE
    return as_variance_reduction(value)


def _control_producer(algorithm: Algorithm, control: NegativeControl, solver: Solver,
                      horizon: float, h: float, dtype: torch.dtype, device: torch.device,
                      vr: VarianceReduction) -> Any:
    """A noise-free flow once on one path; a wrong SME like the SME, with its own tangent."""
    if isinstance(control.sde, NoiseFree):
        return FlowProducer(algorithm, control.sde, solver, horizon, h, dtype, device)
    return CoupledSMEProducer(algorithm, control.sde, solver, horizon, h, dtype, device, vr)
