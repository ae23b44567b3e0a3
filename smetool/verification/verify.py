"""``verify()``: the weak-error convergence test of an SME against its discrete algorithm.

``verify`` = probe the plug-in + :func:`~smetool.weak_error` over the learning rates (the discrete
algorithm as the approximation, the SME as the reference, the negative controls on the SME's
random numbers) + the series verdicts and detection limits (:mod:`.judge`) + at order 2 a second
pass with the hard controls + report. For each learning rate ``lr`` the discrete algorithm runs
``T / lr`` steps on ``N`` paths and the SME is solved on ``N`` independent paths over ``[0, T]``
at steps ``h = lr / r``, ``2h`` and ``4h`` on one Brownian path
(:func:`~smetool.integrate.solve_coupled`), whose Richardson combination removes the solver's own
error (reported next to the weak error).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from ..sde import SDE, NoiseFree, NoiseKind
from ..solvers import SmallNoiseHeun, Solver
from ..stats import OrderFit, WeakOrderWarning
from .judge import bonferroni, detection_limits, judge_table
from .judge import hard_controls as hard_controls_for
from .noise_tests import noise_test_functions
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
    hard_controls: bool = True,
    noise_modes: int = 2,
    false_failure: float = 0.01,
    min_snr: float = 5.0,
    confidence: float = 0.95,
    settings: Mapping[str, Any] | None = None,
    **option_fields: Any,
) -> VerifyResult:
    """Measure the weak error of an SME against its discrete algorithm and judge its order.

    For every learning rate the discrete algorithm and the SME run on independent paths (the
    SME's solver error removed by Richardson extrapolation on coupled grids ``h, 2h, 4h``), with
    small-noise control variates on every term; the errors are judged by the series test
    (:func:`~smetool.judge_series`: the weak error as a series in ``lr``, failed when the data
    demand a lower-order term), the plug-in's negative controls must be failed, the detection
    limits size the check in the SME's own terms, and at order 2 the hard controls (``Σ`` off
    by twice the limit, ``Σ`` diagonal, the drift correction halved) must be failed too.

    Parameters
    ----------
    algorithm : Algorithm
        Any plug-in meeting :class:`smetool.algorithms.Algorithm` (dropout, SGD, …).
    lrs : sequence of float
        Learning rates ``ε`` (at least two; the series test needs three); ``horizon / ε`` must be
        whole for each.
    n_paths : int or MonteCarloOptions
        Paths per side and learning rate, with the other Monte-Carlo options as keywords
        (``seed``, ``chunk_size``, ``dtype``, ``device``, ``checkpoint``, ``progress``,
        ``executor``), or all of them as a :class:`~smetool.MonteCarloOptions`. Chunk ``c`` of
        learning rate ``i`` draws from ``chunk_seed(seed, i, c, 0)`` (discrete) and
        ``chunk_seed(seed, i, c, 1)`` (SME, and every negative control: the same random
        numbers). A chunk holds every path when they fit in the device's memory (measured on a
        one-step probe), on the CPU at most 20,000 unless ``chunk_size`` or ``max_chunk`` say
        otherwise; a method that cannot fit one path (Platen on a wide dropout factor) is refused
        before anything runs. With a ``checkpoint`` folder, learning rate ``i`` is checkpointed
        in ``step{i}.pt`` there (the hard controls in its ``hard-controls`` folder): a killed run
        restarted with the same arguments resumes and gives the same numbers; a checkpoint of
        other arguments (or of another device, GPU model, torch or CUDA version) is refused.
    horizon : float
        ``T`` in SDE time (``T / ε`` steps of the algorithm).
    order : int
        The SME order to test (one of ``algorithm.sme_orders``).
    test_functions : dict, optional
        Name → ``g: (P, D) -> (P,)``; default ``algorithm.test_functions()`` and, at order 2,
        ``noise_modes`` quadratic forms along the leading eigenvectors of ``Σ``
        (:func:`~smetool.verification.noise_tests.noise_test_functions`).
    steps_per_lr : int
        ``r``, an even number ≥ 2: the SME is solved at ``h = ε / r`` and, coupled, at ``2h``
        and ``4h`` (``T / ε · r`` must then be a multiple of 4).
    method : Solver or str, default SmallNoiseHeun()
        The SME solver.
    variance_reduction : {"quadratic", "tangent", "none"}, optional
        The small-noise control variates subtracted on both sides (:mod:`smetool.montecarlo.control`):
        ``"tangent"`` the linear one, ``"quadratic"`` also the quadratic one (where the plug-in
        gives the exact step covariance; else the linear one on that side). Default: the best
        the plug-in supports — the discrete side needs a :class:`~smetool.algorithms.SeparableNoise`
        plug-in, the SME side Brownian (not sampled) noise. The control variates have mean exactly
        zero and every level of the SME's extrapolation carries its own; their coefficient is
        fitted on the same paths (bias ``O(1/N)``, far below the standard error), so they never
        cost variance; the achieved factor is reported per row.
    extrapolate : bool, optional
        Estimate the SME by the Richardson (Talay–Tubaro) combination of its solutions at
        ``h, 2h, 4h`` on one Brownian path, which removes the first two terms ``c_p h^p +
        c_{p+1} h^{p+1}`` of the solver's weak-error expansion (``p`` its weak order for the
        SME's noise kind: 1 for the small-noise Heun scheme on state-dependent noise, whose
        error ``O(h² + ε h)`` has both terms at ``h ∝ ε``), leaving ``O(h³)``. Default: on,
        except for SAMPLED noise (no Brownian path to couple the levels). Without it the SME is
        the finest level and the solver-error column estimates its error.
    controls : bool
        Also run the plug-in's negative controls (:meth:`Algorithm.negative_controls`): wrong
        SMEs on the same random numbers as the SME, solved at two steps per learning rate
        without extrapolation (their solver error is ``O(ε²)`` and cannot create or hide a
        lower-order term), and report whether each is rejected.
    hard_controls : bool
        At order 2 (with ``controls``), also run the hard controls built from the detection
        limits (:func:`~smetool.verification.judge.hard_controls`) in a second pass on the same
        random numbers.
    noise_modes : int
        How many noise-mode test functions an order-2 check adds to the default ones.
    false_failure : float
        The probability that a right SME fails the check: each test function is judged at
        ``false_failure / K`` (Bonferroni over ``K`` test functions). Default 0.01.
    min_snr : float
        Errors below ``min_snr`` standard errors are left out of the log–log slope (a picture in
        the report; the series test uses every point).
    confidence : float
        Of the slope's confidence interval.
    settings : dict, optional
        Extra information stored in the result (e.g. the problem's description).
    **option_fields
        Fields of :class:`~smetool.MonteCarloOptions` when ``n_paths`` is a count.

    Returns
    -------
    VerifyResult
        With the series verdict per test function, the detection limits, the negative controls
        (the hard ones included) and the log–log slopes.

    Raises
    ------
    ValueError, TypeError
        Bad learning rates, horizon, order, path count, test functions or levels, naming the
        plug-in.
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
    if not (isinstance(false_failure, (int, float)) and 0 < false_failure < 1):
        raise ValueError(f"{name}: `false_failure` must be in (0, 1); got {false_failure!r}.")
    if isinstance(noise_modes, bool) or not isinstance(noise_modes, int) or noise_modes < 0:
        raise ValueError(f"{name}: `noise_modes` must be an integer ≥ 0; got {noise_modes!r}.")
    try:
        opts = MonteCarloOptions.of(n_paths, **option_fields)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if opts.max_chunk is None and opts.where.type == "cpu":
        opts = opts.replace(max_chunk=DEFAULT_MAX_CHUNK)
    opts = opts.with_device()
    solver = SmallNoiseHeun() if method is None else as_solver(method)
    tests = dict(algorithm.test_functions() if test_functions is None else test_functions)
    if test_functions is None and order >= 2:
        tests.update(noise_test_functions(algorithm, lrs[0], float(horizon), noise_modes))
    if not tests:
        raise ValueError(f"{name}: `test_functions` must name at least one test function; got none.")
    start = time.perf_counter()

    probes = {lr: probe_plugin(algorithm, name, lr, order, solver, tests, opts.dtype,
                               opts.where) for lr in lrs}
    _check_step_memory(name, solver, probes[lrs[0]], algorithm, opts)
    vr = _variance_reduction(variance_reduction, algorithm, probes[lrs[0]])
    sampled = probes[lrs[0]].noise_kind is NoiseKind.SAMPLED
    use_extrapolation = not sampled if extrapolate is None else bool(extrapolate)
    levels = 3 if use_extrapolation else 2
    _check_levels(name, lrs, float(horizon), steps_per_lr, levels)
    if vr is not VarianceReduction.NONE:
        for lr in lrs:
            probe_control_variates(algorithm, name, lr, opts.dtype, opts.where)
    discrete, sme = {}, {}
    for lr, k_steps in zip(lrs, steps):
        discrete[lr] = AlgorithmProducer(algorithm, lr, k_steps, opts.dtype, opts.where, vr)
        sme[lr] = CoupledSMEProducer(algorithm, probes[lr], solver, float(horizon),
                                     lr / steps_per_lr, opts.dtype, opts.where, vr,
                                     use_extrapolation, levels)
    specs = _control_specs(algorithm, lrs, order) if controls else {}
    tag = (f"verify {name} order={int(order)} horizon={float(horizon)!r} "
           f"steps_per_lr={int(steps_per_lr)} method={solver.name} vr={vr.value} "
           f"extrapolate={use_extrapolation} {algorithm!r}")
    run = _Runner(algorithm, name, solver, float(horizon), opts, vr, tests, tag, discrete, lrs)
    table = run.weak_errors(sme, {c: by_lr for c, (_, by_lr) in specs.items()}, opts)

    alpha = bonferroni(false_failure, list(tests))
    verdicts = judge_table(table, order, alpha)
    limits = detection_limits(table, verdicts, {c: spec for c, (spec, _) in specs.items()})
    results = run.control_results(table, {c: spec for c, (spec, _) in specs.items()}, order,
                                  alpha, min_snr, confidence, hard=False)
    if controls and hard_controls and order >= 2:
        # A hard control the plug-in already declares (by name) ran in the first pass.
        hard = {lr: tuple(c for c in hard_controls_for(algorithm, lr, order, limits)
                          if c.name not in specs) for lr in lrs}
        names = [c.name for c in hard[lrs[0]]]
        if names:
            by_name = {c: {lr: next(x for x in hard[lr] if x.name == c) for lr in lrs}
                       for c in names}
            hard_opts = opts.replace(checkpoint=None if opts.checkpoint is None
                                     else opts.checkpoint / "hard-controls")
            hard_table = run.weak_errors(None, by_name, hard_opts)
            results.update(run.control_results(
                hard_table, {c: by_name[c][lrs[0]] for c in names}, order, alpha, min_snr,
                confidence, hard=True))
    fits, unfitted = _fits(table, tests, min_snr, confidence)
    info = {"seed": opts.seed, "dtype": str(opts.dtype).replace("torch.", ""),
            "device": opts.where.type, "min_snr": min_snr, "confidence": confidence,
            "variance_reduction": vr.value, "extrapolated": use_extrapolation,
            "levels": levels, "false_failure": float(false_failure), "alpha": alpha,
            "device_info": table.device}
    info.update(dict(settings or {}))
    return VerifyResult(
        algorithm=name, order=int(order), horizon=float(horizon), lrs=lrs,
        n_paths=opts.n_paths, steps_per_lr=int(steps_per_lr), method=solver.name,
        weak_errors=table, fits=fits, seconds=time.perf_counter() - start, settings=info,
        unfitted=unfitted, solver_order=float(solver.weak_order_for(probes[lrs[0]].noise_kind)),
        references=unique_references([solver.references, algorithm.cited_references()]),
        verdicts=verdicts, controls=results, detection_limits=limits,
    )


def _control_specs(algorithm: Algorithm, lrs: Sequence[float], order: int
                   ) -> dict[str, tuple[NegativeControl, dict[float, NegativeControl]]]:
    """The plug-in's negative controls, by name: the first learning rate's declaration and the
    control at every learning rate."""
    out: dict[str, tuple[NegativeControl, dict[float, NegativeControl]]] = {}
    for lr in lrs:
        for control in algorithm.negative_controls(lr, order):
            out.setdefault(control.name, (control, {}))[1][lr] = control
    return out


@dataclass(frozen=True)
class _Runner:
    """What the passes of one verification share: the plug-in, the solver, the options, the
    discrete producers (the same paths in every pass: the same seeds)."""

    algorithm: Algorithm
    name: str
    solver: Solver
    horizon: float
    opts: MonteCarloOptions
    vr: VarianceReduction
    tests: Mapping[str, TestFunction]
    tag: str
    discrete: Mapping[float, Any]
    lrs: tuple[float, ...]

    def producer(self, control: NegativeControl, lr: float) -> Any:
        """A control at two SME steps per learning rate, one level, with its own tangent; a
        noise-free flow once on one path."""
        h = lr / 2
        if isinstance(control.sde, NoiseFree):
            return FlowProducer(self.algorithm, control.sde, self.solver, self.horizon, h,
                                self.opts.dtype, self.opts.where)
        return CoupledSMEProducer(self.algorithm, control.sde, self.solver, self.horizon, h,
                                  self.opts.dtype, self.opts.where, self.vr, levels=1)

    def weak_errors(self, sme: Mapping[float, Any] | None,
                    controls: Mapping[str, Mapping[float, NegativeControl]],
                    opts: MonteCarloOptions) -> WeakErrorTable:
        """One pass of :func:`weak_error`: the discrete side against the SME (or, without one,
        against the first control), the controls on the SME's random numbers."""
        producers = {c: {lr: self.producer(ctrl, lr) for lr, ctrl in by_lr.items()}
                     for c, by_lr in controls.items()}
        labels = ("discrete", "SME")
        if sme is None:  # a pass of controls only: the first one takes the reference's place
            first = next(iter(producers))
            sme, labels = producers.pop(first), ("discrete", first)
        try:
            table = weak_error(sme, self.discrete, self.tests, opts, steps=self.lrs,
                               times=(self.horizon,), controls=producers,
                               tag=f"{self.tag} pass={labels[1]}" if labels[1] != "SME" else self.tag,
                               labels=labels, step_name="lr")
        except NonFiniteChunkError as exc:
            raise NonFiniteChunkError(
                exc.chunk, exc.size, exc.counts,
                f"{self.name}: {exc.context} (horizon T = {self.horizon:g}; a smaller learning "
                "rate, or for the SME a larger steps_per_lr, may help)") from None
        if labels[1] != "SME":  # the first control's table is the pass's main table
            alone = dataclasses.replace(table, controls={})
            table = dataclasses.replace(table, controls={labels[1]: alone, **table.controls})
        return table

    def control_results(self, table: WeakErrorTable, specs: Mapping[str, NegativeControl],
                        order: int, alpha: float, min_snr: float, confidence: float,
                        hard: bool) -> dict[str, ControlResult]:
        out = {}
        for cname, control in specs.items():
            ctable = table.controls[cname]
            cfits, _ = _fits(ctable, self.tests, min_snr, confidence)
            out[cname] = ControlResult(
                name=cname, why=control.why, expected_slope=control.slope, fits=cfits,
                verdicts=judge_table(ctable, order, alpha), weak_errors=ctable, hard=hard)
        return out


def _check_levels(name: str, lrs: Sequence[float], horizon: float, steps_per_lr: int,
                  levels: int) -> None:
    """Refuse a grid that the coarsest level (step ``2^{L−1} h``) cannot walk in whole steps."""
    block = 2 ** (levels - 1)
    for lr in lrs:
        n = round(horizon / lr) * steps_per_lr
        if n % block:
            raise ValueError(
                f"{name}: the SME's solver error is removed with steps h, 2h, 4h (extrapolate="
                f"True), so horizon/lr · steps_per_lr must be a multiple of {block}; got "
                f"{round(horizon / lr)} · {steps_per_lr} = {n} at lr={lr:g}. Use steps_per_lr "
                f"= {steps_per_lr * block // math.gcd(n, block)} or extrapolate=False.")


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
