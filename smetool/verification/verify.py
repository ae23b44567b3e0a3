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

from ..algorithms.base import Algorithm
from ..bibliography import unique_references
from ..checks import check_distinct_positive, check_positive, whole_steps
from ..integrate import as_solver
from ..montecarlo import MonteCarloOptions, NonFiniteChunkError, TestFunction, weak_error
from ..solvers import SmallNoiseHeun, Solver
from ..stats import OrderFit, WeakOrderWarning
from .probe import probe_plugin
from .producers import AlgorithmProducer, CoupledSMEProducer
from .result import VerifyResult

__all__ = ["verify", "check_learning_rates", "DEFAULT_MAX_CHUNK"]

DEFAULT_MAX_CHUNK = 20_000
"""Paths per chunk of :func:`verify` when ``chunk_size`` is not given."""


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
    min_snr: float = 3.0,
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
        ``chunk_seed(seed, i, c, 1)`` (SME); chunks hold at most 20,000 paths unless
        ``chunk_size`` says otherwise. With a ``checkpoint`` folder, learning rate ``i`` is
        checkpointed in ``step{i}.pt``: a killed run restarted with the same arguments resumes
        and gives the same numbers; a checkpoint of other arguments is refused.
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
    min_snr : float
        Errors below ``min_snr`` standard errors are flagged and left out of the fit.
    confidence : float
        Of the order's confidence interval.
    settings : dict, optional
        Extra information stored in the result (e.g. the problem's description).
    **option_fields
        Fields of :class:`~smetool.MonteCarloOptions` when ``n_paths`` is a count.

    Returns
    -------
    VerifyResult

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
    if opts.chunk_size is None:
        opts = opts.replace(chunk_size=min(opts.n_paths, DEFAULT_MAX_CHUNK))
    solver = SmallNoiseHeun() if method is None else as_solver(method)
    tests = dict(algorithm.test_functions() if test_functions is None else test_functions)
    if not tests:
        raise ValueError(f"{name}: `test_functions` must name at least one test function; got none.")
    start = time.perf_counter()

    discrete, sme = {}, {}
    for lr, k_steps in zip(lrs, steps):
        sde = probe_plugin(algorithm, name, lr, order, solver, tests, opts.dtype, opts.device)
        discrete[lr] = AlgorithmProducer(algorithm, lr, k_steps, opts.dtype, opts.device)
        sme[lr] = CoupledSMEProducer(algorithm, sde, solver, float(horizon), lr / steps_per_lr,
                                     opts.dtype, opts.device)
    tag = (f"verify {name} order={int(order)} horizon={float(horizon)!r} "
           f"steps_per_lr={int(steps_per_lr)} method={solver.name} {algorithm!r}")
    try:
        table = weak_error(sme, discrete, tests, opts, steps=lrs, times=(float(horizon),),
                           tag=tag, labels=("discrete", "SME"), step_name="lr")
    except NonFiniteChunkError as exc:
        raise NonFiniteChunkError(
            exc.chunk, exc.size, exc.counts,
            f"{name}: {exc.context} (horizon T = {float(horizon):g}; a smaller learning rate, or "
            "for the SME a larger steps_per_lr, may help)") from None

    fits: dict[str, OrderFit] = {}
    unfitted: dict[str, str] = {}
    for tname in tests:
        try:
            with warnings.catch_warnings():
                # Flagged points and sign changes are reported in the result and its table.
                warnings.simplefilter("ignore", WeakOrderWarning)
                fits[tname] = table.fit(tname, min_snr=min_snr, confidence=confidence)
        except ValueError as exc:  # too few resolved points: report it, keep the error table
            unfitted[tname] = str(exc)
    info = {"seed": opts.seed, "dtype": str(opts.dtype).replace("torch.", ""),
            "device": opts.device.type, "min_snr": min_snr, "confidence": confidence}
    info.update(dict(settings or {}))
    return VerifyResult(
        algorithm=name, order=int(order), horizon=float(horizon), lrs=lrs,
        n_paths=opts.n_paths, steps_per_lr=int(steps_per_lr), method=solver.name,
        weak_errors=table, fits=fits, seconds=time.perf_counter() - start, settings=info,
        unfitted=unfitted, solver_order=float(solver.weak_order),
        references=unique_references([solver.references, algorithm.cited_references()]),
    )
