"""``weak_error``: the one Monte-Carlo pipeline of weak errors, ``E g(approx_h) − E g(reference)``.

For each step (or learning rate) ``h`` both sides run on ``n_paths`` paths, chunk by chunk, with
generators seeded from ``(seed, step index, chunk, side)``; test-function values are reduced to
float64 moments in the chunk and merged in chunk order (:mod:`smetool.montecarlo.engine`). The
sides are independent unless ``common_random_numbers`` gives them the same draws. A side that
returns a :class:`~smetool.montecarlo.PathSample` may carry more on the same draws: coarse states
(the coupled estimate of its solver's own error) and a tangent (the small-noise control variates
of :mod:`smetool.montecarlo.control`, subtracted from its values). Negative controls — other
references run on the reference's random numbers — share the approximation's paths.
:func:`smetool.verify` is this pipeline with the discrete algorithm as the approximation and its
SME as the reference.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, §9.7 (batch estimates of
weak errors). Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic
gradient algorithms I", JMLR 20 (2019) — weak approximation of order α in the learning rate.
P. Glasserman, *Monte Carlo Methods in Financial Engineering*, Springer 2004, §4.1 (control
variates with a fitted coefficient).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..checks import check_distinct_positive, check_test_functions
from ..device import device_info, exact_matmul, measure_bytes_per_path
from ..stats import StreamingMoments
from .control import control_values
from .engine import (
    NonFiniteChunkError,
    chunk_generator,
    chunk_seed,
    run_chunks,
)
from .options import MonteCarloOptions
from .producers import (
    TestFunction,
    check_antithetic_producer,
    evaluate_test_functions,
    probe_producer,
    produce,
    producer_device,
    save_time_labels,
)
from .weak_table import ExactReference, WeakErrorTable

__all__ = ["ExactReference", "WeakErrorTable", "weak_error"]

Factory = Callable[[float], Callable] | Mapping[float, Callable]


def _producer_at(factory: Any, step: float, name: str) -> Callable:
    if isinstance(factory, Mapping):
        if step not in factory:
            raise KeyError(f"`{name}` has no producer for step {step:g}; it has steps {sorted(factory)}.")
        producer = factory[step]
    else:
        producer = factory(step)
    if not callable(producer):
        raise TypeError(
            f"`{name}` must give a path producer (n_paths, generator) -> (S, P, D) for each step; "
            f"for step {step:g} it gave {type(producer).__name__}."
        )
    return producer


@dataclass(frozen=True)
class _WeakErrorTask:
    """One chunk of one step of :func:`weak_error` (a picklable pure function of the chunk).

    Accumulators: ``approx`` and ``ref`` (values with the control variates subtracted, when the
    side has a tangent), ``approx_raw``/``ref_raw`` (without them, for the reduction factor),
    ``ref_coarse`` (fine − coarse), ``diff`` (paired, with CRN), ``control:NAME`` per control.
    """

    approx: Callable
    reference: Callable | None  # None: an exact reference
    controls: tuple[tuple[str, Callable], ...]
    tests: Mapping[str, TestFunction]
    seed: int
    step_index: int
    device: torch.device
    common_random_numbers: bool
    antithetic: bool
    labels: tuple[str, str]

    def side(self, producer: Callable, label: str, side: int, n: int, c: int,
             anti: bool | None, out: dict[str, Tensor], key: str) -> Tensor:
        # With common random numbers both sides get the approximation's stream.
        stream = 0 if self.common_random_numbers else side
        gen = chunk_generator(self.device, chunk_seed(self.seed, self.step_index, c, stream))
        sample = produce(producer, n, gen, anti, label)
        values = [evaluate_test_functions(self.tests, xs) for xs in (sample.states, *sample.coarse)]
        controls = [] if sample.tangent is None else [
            control_values(self.tests, t) for t in (sample.tangent, *sample.coarse_tangents)]
        weights = sample.richardson_weights()

        def combined(terms: list[Tensor]) -> Tensor:
            return sum((w * term for w, term in zip(weights, terms)), torch.zeros_like(terms[0]))

        every_level = len(controls) == len(values)
        if sample.coarse:
            # The finest level's own error, g_h − Σ_l w_l g_l, each level with its control
            # variates when it has them (mean zero, so the estimate stays unbiased).
            residuals = [v - cv for v, cv in zip(values, controls)] if every_level else values
            out[f"{key}_solver"] = residuals[0] - combined(residuals)
        value = combined(values) if sample.extrapolate else values[0]
        if controls:
            cv = combined(controls) if sample.extrapolate and every_level else controls[0]
            out[f"{key}_raw"] = value
            out[f"{key}_cv"] = cv
            value = value - cv
        out[key] = value
        return value

    def run(self, n: int, c: int, anti: bool | None) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        a = self.side(self.approx, self.labels[0], 0, n, c, anti, out, "approx")
        if self.reference is not None:
            r = self.side(self.reference, self.labels[1], 1, n, c, anti, out, "ref")
            if r.shape != a.shape:
                raise ValueError(
                    f"`{self.labels[1]}` returned {r.shape[1]} save times, `{self.labels[0]}` "
                    f"{a.shape[1]}; both must save at the same times.")
            if self.common_random_numbers:
                out["diff"] = a - r
                if "approx_raw" in out or "ref_raw" in out:
                    out["diff_raw"] = out.get("approx_raw", a) - out.get("ref_raw", r)
                    zero = torch.zeros_like(a)
                    out["diff_cv"] = out.get("approx_cv", zero) - out.get("ref_cv", zero)
        for name, producer in self.controls:  # on the reference's random numbers
            self.side(producer, f"control {name!r}", 1, n, c, anti, out, f"control:{name}")
        return out

    def __call__(self, n: int, c: int) -> dict[str, Tensor]:
        if not self.antithetic:
            return self.run(n, c, None)
        plus, minus = self.run(n, c, False), self.run(n, c, True)
        out = {k: 0.5 * (plus[k] + minus[k]) for k in plus}
        out.update({f"single_{k}": torch.cat([plus[k], minus[k]], dim=-1) for k in plus})
        return out

    def bytes_per_path(self) -> int:
        """The memory one path of a chunk costs: the largest working memory of a side (its
        producer cut to one step where it can be, :func:`probe_producer`, and its test-function
        values, measured on probe chunks of 2 and 4 paths) plus the float64 values every side
        keeps until the chunk ends (up to four accumulators each, twice with antithetic pairs).
        The control variates are left out of the probe: their per-path memory is that of the
        values, and their derivatives at the mean path cost no memory per path."""
        sides = [self.approx, *([] if self.reference is None else [self.reference]),
                 *(p for _, p in self.controls)]
        anti = False if self.antithetic else None
        saves: list[int] = []

        def probe(producer: Callable) -> Callable[[int], Tensor]:
            short = probe_producer(producer)

            def run(n: int) -> Tensor:
                gen = chunk_generator(self.device, chunk_seed(self.seed, self.step_index, 2**31 - 1))
                values = evaluate_test_functions(self.tests, produce(short, n, gen, anti).states)
                saves.append(values.shape[1])
                return values
            return run

        work = max(measure_bytes_per_path(probe(p)) for p in sides)
        kept = 8 * len(self.tests) * max(saves) * 4 * len(sides) * (2 if self.antithetic else 1)
        return work + kept


class _Fitted:
    """The mean and per-sample variance of ``g − β c`` from the moments of ``g − c``, ``g`` and
    ``c``, with the variance-minimising coefficient ``β = Cov(g, c) / Var(c)`` (per test function
    and save time; ``β = 1`` on a linear problem, where ``g − c`` is constant; ``β → 0`` for a
    control variate that only adds noise). With ``β`` estimated from the same samples the estimate
    has a bias ``O(1/N)``, negligible against its ``O(1/√N)`` standard error (Glasserman 2004,
    §4.1.2). A key without control variates is its plain moments."""

    def __init__(self, acc: Mapping[str, StreamingMoments], key: str):
        used = acc[key]
        self.count = used.count
        if f"{key}_cv" not in acc:
            self.mean, self.variance, self.raw_variance = used.mean, used.variance, used.variance
            return
        raw, cv = acc[f"{key}_raw"], acc[f"{key}_cv"]
        v_cv = cv.variance
        # Cov(g − c, c) by polarisation; (1 − β) = −Cov(g − c, c) / Var(c)
        cross = 0.5 * (raw.variance - used.variance - v_cv)
        shift = torch.where(v_cv > 0, cross / torch.where(v_cv > 0, v_cv, 1.0), 0.0)
        self.mean = used.mean - shift * cv.mean  # mean(g − β c) = mean(g − c) + (1 − β) mean(c)
        self.variance = torch.clamp(used.variance - shift * cross, min=0.0)
        self.raw_variance = raw.variance

    @property
    def stderr(self) -> Tensor:
        return torch.sqrt(self.variance / self.count)


def _step_summary(acc: Mapping[str, StreamingMoments], ref: str, exact: Tensor | None,
                  crn: bool, antithetic: bool) -> dict[str, Any]:
    """Errors, standard errors and variance-reduction factors of one step against the reference
    accumulated as ``ref`` (or an exact one).

    Variances per sample: ``v_indep`` (both sides sampled independently, one path each),
    ``v_single`` (one path, plain values, as sampled: CRN-paired or not), ``v_raw`` (a sample as
    used: an antithetic pair, plain values) and ``v_used`` (the same with the control variates
    subtracted, :class:`_Fitted`). The factors: CRN ``v_indep / v_single``, antithetic
    ``v_single / (2 v_raw)``, control variates ``v_raw / v_used``, all together
    ``v_indep / (paths per sample · v_used)``.
    """
    a = _Fitted(acc, "approx")

    def var(key: str, single: bool = False) -> Tensor:
        key = key if key in acc else key.removesuffix("_raw")  # no tangent: raw = values
        return acc[f"single_{key}"].variance if single and antithetic else acc[key].variance

    out: dict[str, Any] = {"approx_mean": a.mean, "approx_stderr": a.stderr, "count": a.count,
                           "crn": None, "anti": None, "solver": None, "solver_se": None,
                           "cv": None}
    if exact is not None:
        out.update(error=a.mean - exact, stderr=a.stderr, ref_mean=exact,
                   ref_stderr=torch.zeros_like(a.stderr))
        v_indep = v_single = var("approx_raw", True)
        v_raw, v_used = var("approx_raw"), a.variance
    else:
        r = _Fitted(acc, ref)
        out.update(ref_mean=r.mean, ref_stderr=r.stderr)
        v_indep = var("approx_raw", True) + var(f"{ref}_raw", True)
        if crn and ref == "ref":
            d = _Fitted(acc, "diff")
            out.update(error=d.mean, stderr=d.stderr)
            v_single, v_raw, v_used = var("diff_raw", True), var("diff_raw"), d.variance
            out["crn"] = v_indep / v_single
        else:
            out.update(error=a.mean - r.mean, stderr=torch.hypot(a.stderr, r.stderr))
            v_single = v_indep
            v_raw, v_used = var("approx_raw") + var(f"{ref}_raw"), a.variance + r.variance
        if f"{ref}_solver" in acc:
            out.update(solver=acc[f"{ref}_solver"].mean, solver_se=acc[f"{ref}_solver"].stderr)
    if antithetic:
        out["anti"] = v_single / (2.0 * v_raw)
    if "approx_raw" in acc or f"{ref}_raw" in acc:
        out["cv"] = v_raw / v_used
    out["reduction"] = v_indep / ((2 if antithetic else 1) * v_used)
    return out


def _table(per_step: list[dict[str, Any]], names: list[str], times: Any, hs: tuple[float, ...],
           seed: int, crn: bool, antithetic: bool, exact: bool, labels: tuple[str, str],
           step_name: str, controls: dict[str, WeakErrorTable] | None = None,
           device: dict[str, Any] | None = None) -> WeakErrorTable:
    def stacked(key: str) -> Any:
        if per_step[0][key] is None:
            return None
        return torch.stack([d[key] for d in per_step], dim=-1)

    S = per_step[0]["error"].shape[-1]
    return WeakErrorTable(
        names=tuple(names), times=save_time_labels(times, S), steps=hs,
        errors=stacked("error"), stderrs=stacked("stderr"),
        approx_means=stacked("approx_mean"), approx_stderrs=stacked("approx_stderr"),
        reference_means=stacked("ref_mean"), reference_stderrs=stacked("ref_stderr"),
        count=int(per_step[0]["count"]), seed=seed, common_random_numbers=crn,
        antithetic=antithetic, exact_reference=exact, variance_reduction=stacked("reduction"),
        crn_factor=stacked("crn"), antithetic_factor=stacked("anti"),
        reference_solver_errors=stacked("solver"), reference_solver_stderrs=stacked("solver_se"),
        labels=labels, step_name=step_name, control_variate_factor=stacked("cv"),
        controls=controls or {}, device=device or {},
    )


def weak_error(
    reference: ExactReference | Factory,
    approximation: Factory,
    test_functions: Mapping[str, TestFunction],
    n_paths: int | MonteCarloOptions,
    *,
    steps: Sequence[float],
    common_random_numbers: bool = False,
    antithetic: bool = False,
    controls: Mapping[str, Factory] | None = None,
    times: Sequence[float] | None = None,
    tag: str = "",
    labels: tuple[str, str] = ("approximation", "reference"),
    step_name: str = "h",
    **option_fields: Any,
) -> WeakErrorTable:
    """Estimate the weak errors ``E g(approx_h(t)) − E g(ref(t))`` for several steps ``h``.

    For each step the approximation (and a sampled reference) are run on ``n_paths`` paths in
    chunks (:mod:`smetool.montecarlo.engine`: float64 streaming moments, deterministic per-chunk
    seeds, checkpoints, any executor). Every step uses its own independent random stream, so the
    errors at different steps are independent, as :func:`~smetool.fit_order` assumes. A side
    whose producer returns a tangent (:class:`~smetool.montecarlo.PathSample`) has its small-noise
    control variates subtracted with the variance-minimising coefficient fitted on the same
    samples (bias ``O(1/N)``, against a standard error ``O(1/√N)``); the table reports the
    variance reduction achieved.

    Parameters
    ----------
    reference : ExactReference, or callable / mapping step -> path producer
        Exact expectations (zero standard error), or a producer of reference paths per step (the
        step may be ignored, e.g. for exact sampling of the SDE).
    approximation : callable or mapping step -> path producer
        The scheme (or training algorithm) at step ``h``; producers return ``(S, P, D)`` states
        or a :class:`~smetool.montecarlo.PathSample`.
    test_functions : dict of str to callable
        ``g``: states ``(N, D)`` to values ``(N,)``, row by row.
    n_paths : int or MonteCarloOptions
        Samples per step (antithetic pairs when ``antithetic``) with the other options as
        keywords, or all the options (:class:`MonteCarloOptions`). Chunk ``c`` of step ``i``
        draws from ``chunk_seed(seed, i, c, 0)`` (approximation) and ``chunk_seed(seed, i, c, 1)``
        (reference and controls). The device is the producers' unless given; the chunk size is
        planned from the memory a probe chunk measures (:class:`MonteCarloOptions`). With a
        ``checkpoint`` folder, step ``i`` is checkpointed in ``step{i}.pt`` there.
    steps : sequence of float
        Step sizes or learning rates, positive and distinct.
    common_random_numbers : bool
        Give both producers generators in the same state in every chunk. The estimate is unbiased
        either way; it has a smaller variance only when the producers turn the same draws into
        coupled paths (e.g. a scheme and the exact solution built from the same Brownian
        increments). Needs a sampled reference.
    antithetic : bool
        Run every chunk a second time with ``antithetic=True`` (generators in the same state; see
        :class:`smetool.AntitheticPathProducer`) and average each pair.
    controls : dict of str to (callable or mapping step -> path producer), optional
        Negative controls: other references (wrong SMEs) run on the reference's random numbers
        against the same approximation paths; their tables are in
        :attr:`WeakErrorTable.controls`.
    times : sequence of float, optional
        Labels of the ``S`` save times.
    tag : str
        A description of the producers for the checkpoints' fingerprints.
    labels : (str, str)
        Names of the two sides in messages and reports.
    step_name : str
        What a step is, in messages and reports.
    **option_fields
        Fields of :class:`MonteCarloOptions` when ``n_paths`` is a count.

    Returns
    -------
    WeakErrorTable

    Raises
    ------
    ValueError
        Empty, non-positive or repeated steps; CRN with an exact reference; inconsistent numbers
        of save times; an exact reference without an entry per test function.
    TypeError
        A reference or approximation that is not a producer factory; ``antithetic=True`` with a
        producer that lacks the keyword.
    NonFiniteChunkError
        A side diverged; the message names the step, the chunk and the paths per side.

    Examples
    --------
    >>> import math, torch
    >>> from smetool import ExactReference, weak_error
    >>> def em(h):  # Euler–Maruyama for dX = -X dt + 0.2 X dW on [0, 1]
    ...     def producer(n, gen):
    ...         x = torch.ones(n, 1, dtype=torch.float64)
    ...         for _ in range(round(1 / h)):
    ...             x = x - x * h + 0.2 * x * math.sqrt(h) * torch.randn(n, 1, generator=gen, dtype=x.dtype)
    ...         return x.unsqueeze(0)
    ...     return producer
    >>> ref = ExactReference({"x": math.exp(-1.0)})
    >>> table = weak_error(ref, em, {"x": lambda x: x[:, 0]}, 20_000, seed=0,
    ...                    steps=[0.25, 0.125], progress=False)
    >>> bool((table.errors < 0).all())
    True
    """
    hs = check_distinct_positive(steps, "steps")
    tests = check_test_functions(test_functions)
    names = list(tests)
    opts = MonteCarloOptions.of(n_paths, **option_fields)
    exact = isinstance(reference, ExactReference)
    if not exact and not (callable(reference) or isinstance(reference, Mapping)):
        raise TypeError(
            "`reference` must be an ExactReference or a callable/mapping step -> path producer; "
            f"got {type(reference).__name__}."
        )
    if not (callable(approximation) or isinstance(approximation, Mapping)):
        raise TypeError(
            "`approximation` must be a callable or mapping step -> path producer; got "
            f"{type(approximation).__name__}."
        )
    if exact and common_random_numbers:
        raise ValueError(
            "common_random_numbers=True needs a sampled reference (a producer per step); an "
            "ExactReference has no randomness to share. Use common_random_numbers=False."
        )
    control_factories = dict(controls or {})
    if exact and control_factories:
        raise ValueError("`controls` run on the reference's random numbers; an ExactReference "
                         "has none. Give the controls a sampled reference.")

    per_step: list[dict[str, Any]] = []
    per_control: dict[str, list[dict[str, Any]]] = {name: [] for name in control_factories}
    n_saves: dict[str, int] = {}
    for i, h in enumerate(hs):
        approx = _producer_at(approximation, h, labels[0])
        ref = None if exact else _producer_at(reference, h, labels[1])
        ctrl = tuple((name, _producer_at(f, h, f"controls[{name!r}]"))
                     for name, f in control_factories.items())
        if i == 0:  # the run's device: given, else the producers'
            opts = opts.with_device(producer_device(approx), producer_device(ref))
        if antithetic:
            for producer, label in ((approx, labels[0]), (ref, labels[1]), *(
                    (p, f"controls[{name!r}]") for name, p in ctrl)):
                if producer is not None:
                    check_antithetic_producer(producer, label)
        task = _WeakErrorTask(approx, ref, ctrl, tests, opts.seed, i, opts.where,
                              bool(common_random_numbers), bool(antithetic), labels)
        checkpoint = opts.checkpoint_file(f"step{i}.pt")
        chunk = opts.plan_chunk(task.bytes_per_path, checkpoint,
                                f"a chunk at {step_name}={h:g}")
        fingerprint = {
            "kind": "weak_error", **opts.describe(), "chunk_size": chunk,
            "compile": opts.compiles(chunk), "names": names,
            "tag": str(tag), "step": h, "step_index": i, "controls": sorted(control_factories),
            "common_random_numbers": bool(common_random_numbers), "antithetic": bool(antithetic),
            "exact_reference": exact,
        }
        try:
            acc = run_chunks(task, opts.n_paths, chunk, fingerprint=fingerprint,
                             checkpoint=checkpoint,
                             checkpoint_every=opts.checkpoint_every, progress=opts.progress,
                             desc=f"{step_name}={h:g}",
                             paths_per_sample=(2 if antithetic else 1) * (2 + len(ctrl)),
                             executor=opts.executor, compile=opts.compiles(chunk))
        except NonFiniteChunkError as exc:
            sides = {"approx": labels[0], "ref": labels[1], "ref_solver": f"coarse {labels[1]}"}
            counts = {sides.get(k, k): v for k, v in exc.counts.items()
                      if not k.startswith(("diff", "single")) and not k.endswith(("_raw", "_cv"))}
            raise NonFiniteChunkError(exc.chunk, exc.size, counts,
                                      f"at {step_name}={h:g}") from None
        S = acc["approx"].mean.shape[-1]
        if n_saves.setdefault("S", S) != S:
            raise ValueError(
                f"the producers returned {S} save times at {step_name}={h:g}; earlier steps "
                f"returned {n_saves['S']}. Every step must save at the same times.")
        ref_values = reference.values(h, names, S) if isinstance(reference, ExactReference) else None
        crn, anti = bool(common_random_numbers), bool(antithetic)
        per_step.append(_step_summary(acc, "ref", ref_values, crn, anti))
        for name in control_factories:
            per_control[name].append(_step_summary(acc, f"control:{name}", None, False, anti))

    label_pair = (labels[0], labels[1])
    with exact_matmul():  # the settings the chunks ran with
        info = device_info(opts.where)
    control_tables = {
        name: _table(rows, names, times, hs, opts.seed, False, bool(antithetic), False,
                     (labels[0], name), step_name, device=info)
        for name, rows in per_control.items()
    }
    return _table(per_step, names, times, hs, opts.seed, bool(common_random_numbers),
                  bool(antithetic), exact, label_pair, step_name, control_tables, device=info)
