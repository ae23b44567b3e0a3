"""``weak_error``: the one Monte-Carlo pipeline of weak errors, ``E g(approx_h) − E g(reference)``.

For each step (or learning rate) ``h`` both sides run on ``n_paths`` paths, chunk by chunk, with
generators seeded from ``(seed, step index, chunk, side)``; test-function values are reduced to
float64 moments in the chunk and merged in chunk order (:mod:`smetool.montecarlo.engine`). The
sides are independent unless ``common_random_numbers`` gives them the same draws; a side that
returns a :class:`~smetool.montecarlo.PathSample` with coarse states also gets the coupled
estimate of its solver's own error. :func:`smetool.verify` is this pipeline with the discrete
algorithm as the approximation and its SME as the reference.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, §9.7 (batch estimates of
weak errors). Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic
gradient algorithms I", JMLR 20 (2019) — weak approximation of order α in the learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_distinct_positive, check_test_functions
from ..jsonutil import json_safe
from ..stats import OrderFit, StreamingMoments, fit_order
from .engine import (
    NonFiniteChunkError,
    chunk_generator,
    chunk_seed,
    resolve_chunk_size,
    run_chunks,
)
from .options import MonteCarloOptions
from .producers import (
    PathSample,
    TestFunction,
    check_antithetic_producer,
    evaluate_test_functions,
    produce,
    save_time_labels,
)

__all__ = ["ExactReference", "WeakErrorTable", "weak_error"]


class ExactReference:
    """Exact expectations ``E g(X_t)`` used as the reference of :func:`weak_error` (zero SE).

    Parameters
    ----------
    expectations : mapping or callable
        ``{name: value}`` with a scalar (the same at every save time) or one value per save time,
        or a callable ``step -> {name: value}`` when the reference depends on the step (e.g. the
        exact moments of the discrete scheme).

    Examples
    --------
    >>> import math
    >>> ref = ExactReference({"x": [1.0, math.exp(-1.0)]})   # E X_t of dX = -X dt at t = 0, 1
    """

    def __init__(self, expectations: Mapping[str, Any] | Callable[[float], Mapping[str, Any]]):
        if not (isinstance(expectations, Mapping) or callable(expectations)):
            raise TypeError(
                "`expectations` must be a dict {name: value(s)} or a callable step -> dict; got "
                f"{type(expectations).__name__}."
            )
        self.expectations = expectations

    def values(self, step: float, names: Sequence[str], S: int) -> Tensor:
        """The expectations at ``step`` as float64 ``(K, S)``, checked against ``names``."""
        table = self.expectations(step) if callable(self.expectations) else self.expectations
        if not isinstance(table, Mapping) or set(table) != set(names):
            got = sorted(table) if isinstance(table, Mapping) else type(table).__name__
            raise ValueError(
                f"the exact reference must give one entry per test function {sorted(names)}; got "
                f"{got}."
            )
        rows = []
        for name in names:
            v = torch.as_tensor(table[name], dtype=torch.float64).reshape(-1)
            if v.numel() == 1:
                v = v.expand(S)
            if v.numel() != S:
                raise ValueError(
                    f"the exact reference for {name!r} must be a scalar or have one value per "
                    f"save time ({S}); got {v.numel()} values."
                )
            rows.append(v)
        return torch.stack(rows)

    def __repr__(self) -> str:
        return f"ExactReference({self.expectations!r})"


@dataclass(frozen=True)
class WeakErrorTable:
    """Weak errors ``E g(approx_h) − E g(ref)`` per test function, save time and step.

    Attributes
    ----------
    names : tuple of str, (K,)
    times : tuple of float, (S,)
    steps : tuple of float, (L,)
        In the order given.
    errors, stderrs : Tensor, (K, S, L), float64
        The estimated errors and their standard errors: from the paired per-path differences with
        common random numbers, otherwise ``mean_a − mean_r`` with ``SE = hypot(SE_a, SE_r)`` (the
        two sides are independent).
    approx_means, approx_stderrs, reference_means, reference_stderrs : Tensor, (K, S, L)
        The two means (reference standard errors are 0 for an :class:`ExactReference`).
    count : int
        Samples per step (antithetic pairs when ``antithetic``).
    seed : int
    common_random_numbers, antithetic, exact_reference : bool
    variance_reduction : Tensor, (K, S, L)
        Variance of the error estimate that independent sampling with the same number of simulated
        paths would give, divided by the variance achieved (1 without CRN or antithetic pairs).
        Estimated from the same run.
    crn_factor, antithetic_factor : Tensor (K, S, L) or None
        The two parts of ``variance_reduction``: ``(Var g_a + Var g_r) / Var(g_a − g_r)`` per path,
        and ``Var(single difference) / (2 Var(pair-averaged difference))``.
    reference_coarse_differences, reference_coarse_stderrs : Tensor (K, S, L) or None
        When the reference returns coarse states (:class:`~smetool.montecarlo.PathSample`):
        ``E g(ref at h) − E g(ref at 2h)`` on coupled paths, and its standard error.
    labels : (str, str)
        Names of the two sides (``("approximation", "reference")``; ``verify`` uses
        ``("discrete", "SME")``).
    step_name : str
        What a step is (``"h"``, ``"lr"``).
    """

    names: tuple[str, ...]
    times: tuple[float, ...]
    steps: tuple[float, ...]
    errors: Tensor
    stderrs: Tensor
    approx_means: Tensor
    approx_stderrs: Tensor
    reference_means: Tensor
    reference_stderrs: Tensor
    count: int
    seed: int
    common_random_numbers: bool
    antithetic: bool
    exact_reference: bool
    variance_reduction: Tensor
    crn_factor: Tensor | None = None
    antithetic_factor: Tensor | None = None
    reference_coarse_differences: Tensor | None = field(default=None, repr=False)
    reference_coarse_stderrs: Tensor | None = field(default=None, repr=False)
    labels: tuple[str, str] = ("approximation", "reference")
    step_name: str = "h"

    @property
    def snr(self) -> Tensor:
        """``|error| / stderr``, (K, S, L)."""
        return self.errors.abs() / self.stderrs

    def index(self, name: str, time_index: int = -1) -> tuple[int, int]:
        """The ``(k, s)`` position of a test function and save time.

        Raises
        ------
        KeyError, IndexError
            An unknown name or a save-time index out of range.
        """
        if name not in self.names:
            raise KeyError(f"no test function {name!r}; the table has {list(self.names)}.")
        if not -len(self.times) <= time_index < len(self.times):
            S = len(self.times)
            raise IndexError(f"`time_index` must be in [-{S}, {S}); got {time_index}.")
        return self.names.index(name), time_index

    def series(self, name: str, time_index: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, errors, stderrs)`` of one test function at one save time, as numpy arrays."""
        k, s = self.index(name, time_index)
        return (np.asarray(self.steps), self.errors[k, s].numpy().copy(),
                self.stderrs[k, s].numpy().copy())

    def fit(self, name: str, time_index: int = -1, **kwargs: Any) -> OrderFit:
        """:func:`~smetool.fit_order` on one test function at one save time (default the last)."""
        return fit_order(*self.series(name, time_index), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (NaN → None); tensors become lists indexed ``[name][time][step]``."""
        return json_safe(dict(self.__dict__))

    def __repr__(self) -> str:
        mode = ", ".join(m for m, on in (("CRN", self.common_random_numbers),
                                          ("antithetic", self.antithetic),
                                          ("exact reference", self.exact_reference)) if on)
        lines = [f"WeakErrorTable(count={self.count}, seed={self.seed}{', ' + mode if mode else ''})"]
        for k, name in enumerate(self.names):
            for s, t in enumerate(self.times):
                lines.append(f"  {name} @ t={t:g}:")
                for j, h in enumerate(self.steps):
                    lines.append(
                        f"    {self.step_name}={h:<10.4g} error={self.errors[k, s, j]:+.4e} ± "
                        f"{self.stderrs[k, s, j]:.2e} (|e|/SE={self.snr[k, s, j]:.1f}, "
                        f"VR={self.variance_reduction[k, s, j]:.3g})"
                    )
        return "\n".join(lines)


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
    """One chunk of one step of :func:`weak_error` (a picklable pure function of the chunk)."""

    approx: Callable
    reference: Callable | None  # None: an exact reference
    tests: Mapping[str, TestFunction]
    seed: int
    step_index: int
    device: torch.device
    common_random_numbers: bool
    antithetic: bool
    labels: tuple[str, str]

    def side(self, producer: Callable, label: str, side: int, n: int, c: int,
             anti: bool | None) -> tuple[Tensor, Tensor | None]:
        # With common random numbers both sides get the approximation's stream.
        key = 0 if self.common_random_numbers else side
        gen = chunk_generator(self.device, chunk_seed(self.seed, self.step_index, c, key))
        sample: PathSample = produce(producer, n, gen, anti, label)
        values = evaluate_test_functions(self.tests, sample.states)
        coarse = None
        if sample.coarse is not None:
            coarse = values - evaluate_test_functions(self.tests, sample.coarse)
        return values, coarse

    def run(self, n: int, c: int, anti: bool | None) -> dict[str, Tensor]:
        a, _ = self.side(self.approx, self.labels[0], 0, n, c, anti)
        out = {"approx": a}
        if self.reference is not None:
            r, coarse = self.side(self.reference, self.labels[1], 1, n, c, anti)
            if r.shape != a.shape:
                raise ValueError(
                    f"`{self.labels[1]}` returned {r.shape[1]} save times, `{self.labels[0]}` "
                    f"{a.shape[1]}; both must save at the same times.")
            out["ref"] = r
            if coarse is not None:
                out["ref_coarse"] = coarse
            if self.common_random_numbers:
                out["diff"] = a - r
        return out

    def __call__(self, n: int, c: int) -> dict[str, Tensor]:
        if not self.antithetic:
            return self.run(n, c, None)
        plus, minus = self.run(n, c, False), self.run(n, c, True)
        out = {k: 0.5 * (plus[k] + minus[k]) for k in plus}
        out.update({f"single_{k}": torch.cat([plus[k], minus[k]], dim=-1) for k in plus})
        return out


def _step_summary(acc: Mapping[str, StreamingMoments], exact: Tensor | None,
                  crn: bool, antithetic: bool) -> dict[str, Any]:
    """Errors, standard errors and variance-reduction factors of one step from its moments."""
    a = acc["approx"]
    pps = 2 if antithetic else 1  # simulated paths per sample

    def single_var(key: str) -> Tensor:
        return acc[f"single_{key}"].variance if antithetic else acc[key].variance

    out: dict[str, Any] = {"approx_mean": a.mean, "approx_stderr": a.stderr, "count": a.count,
                           "crn": None, "anti": None, "coarse": None, "coarse_se": None}
    if exact is not None:
        out.update(error=a.mean - exact, stderr=a.stderr, ref_mean=exact,
                   ref_stderr=torch.zeros_like(a.stderr))
        v_indep, v_achieved = single_var("approx"), a.variance
        if antithetic:
            out["anti"] = single_var("approx") / (2.0 * a.variance)
    else:
        r = acc["ref"]
        out.update(ref_mean=r.mean, ref_stderr=r.stderr)
        # Independent sampling of both sides with the same number of simulated paths would give
        # the difference a per-sample variance Var g_a + Var g_r.
        v_indep = single_var("approx") + single_var("ref")
        if crn:
            d = acc["diff"]
            out.update(error=d.mean, stderr=d.stderr, crn=v_indep / single_var("diff"))
            v_achieved = d.variance
            if antithetic:
                out["anti"] = single_var("diff") / (2.0 * d.variance)
        else:
            out.update(error=a.mean - r.mean, stderr=torch.hypot(a.stderr, r.stderr))
            v_achieved = a.variance + r.variance
            if antithetic:
                out["anti"] = v_indep / (2.0 * v_achieved)
        if "ref_coarse" in acc:
            out.update(coarse=acc["ref_coarse"].mean, coarse_se=acc["ref_coarse"].stderr)
    out["reduction"] = v_indep / (pps * v_achieved)
    return out


def weak_error(
    reference: ExactReference | Callable[[float], Callable] | Mapping[float, Callable],
    approximation: Callable[[float], Callable] | Mapping[float, Callable],
    test_functions: Mapping[str, TestFunction],
    n_paths: int | MonteCarloOptions,
    *,
    steps: Sequence[float],
    common_random_numbers: bool = False,
    antithetic: bool = False,
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
    errors at different steps are independent, as :func:`~smetool.fit_order` assumes.

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
        keywords, or all the options (:class:`MonteCarloOptions`). Chunk ``c``
        of step ``i`` draws from ``chunk_seed(seed, i, c, 0)`` (approximation) and
        ``chunk_seed(seed, i, c, 1)`` (reference). With a ``checkpoint`` folder, step ``i`` is
        checkpointed in ``step{i}.pt`` there.
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

    per_step = []
    n_saves: dict[str, int] = {}
    for i, h in enumerate(hs):
        approx = _producer_at(approximation, h, labels[0])
        ref = None if exact else _producer_at(reference, h, labels[1])
        if antithetic:
            check_antithetic_producer(approx, labels[0])
            if ref is not None:
                check_antithetic_producer(ref, labels[1])
        task = _WeakErrorTask(approx, ref, tests, opts.seed, i, opts.device,
                              bool(common_random_numbers), bool(antithetic), labels)

        def probe(approx=approx, i=i) -> int:
            flag = False if antithetic else None
            gen = chunk_generator(opts.device, chunk_seed(opts.seed, i, 2**31 - 1))
            xs = produce(approx, 2, gen, flag, labels[0]).states
            calls = (2 if antithetic else 1) * (1 if exact else 2)
            return calls * xs[:, 0].numel() * xs.element_size() + 3 * 8 * len(names) * xs.shape[0] * 2

        chunk = resolve_chunk_size(opts.chunk_size, opts.memory_budget, opts.n_paths, probe)
        fingerprint = {
            "kind": "weak_error", **opts.describe(), "chunk_size": chunk, "names": names,
            "tag": str(tag), "step": h, "step_index": i,
            "common_random_numbers": bool(common_random_numbers), "antithetic": bool(antithetic),
            "exact_reference": exact,
        }
        try:
            acc = run_chunks(task, opts.n_paths, chunk, fingerprint=fingerprint,
                             checkpoint=opts.checkpoint_file(f"step{i}.pt"),
                             checkpoint_every=opts.checkpoint_every, progress=opts.progress,
                             desc=f"{step_name}={h:g}", paths_per_sample=2 if antithetic else 1,
                             executor=opts.executor)
        except NonFiniteChunkError as exc:
            sides = {"approx": labels[0], "ref": labels[1], "ref_coarse": f"coarse {labels[1]}"}
            counts = {sides.get(k, k): v for k, v in exc.counts.items()
                      if not k.startswith(("diff", "single"))}
            raise NonFiniteChunkError(exc.chunk, exc.size, counts,
                                      f"at {step_name}={h:g}") from None
        S = acc["approx"].mean.shape[-1]
        if n_saves.setdefault("S", S) != S:
            raise ValueError(
                f"the producers returned {S} save times at {step_name}={h:g}; earlier steps "
                f"returned {n_saves['S']}. Every step must save at the same times.")
        ref_values = reference.values(h, names, S) if isinstance(reference, ExactReference) else None
        per_step.append(_step_summary(acc, ref_values, bool(common_random_numbers), bool(antithetic)))

    def stacked(key: str) -> Any:
        if per_step[0][key] is None:
            return None
        return torch.stack([d[key] for d in per_step], dim=-1)

    return WeakErrorTable(
        names=tuple(names), times=save_time_labels(times, n_saves["S"]), steps=hs,
        errors=stacked("error"), stderrs=stacked("stderr"),
        approx_means=stacked("approx_mean"), approx_stderrs=stacked("approx_stderr"),
        reference_means=stacked("ref_mean"), reference_stderrs=stacked("ref_stderr"),
        count=int(per_step[0]["count"]), seed=opts.seed,
        common_random_numbers=bool(common_random_numbers), antithetic=bool(antithetic),
        exact_reference=exact, variance_reduction=stacked("reduction"), crn_factor=stacked("crn"),
        antithetic_factor=stacked("anti"), reference_coarse_differences=stacked("coarse"),
        reference_coarse_stderrs=stacked("coarse_se"), labels=(labels[0], labels[1]),
        step_name=step_name,
    )
