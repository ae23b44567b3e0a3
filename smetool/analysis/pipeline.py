"""The one pipeline of the analyses: train, then measure.

* :func:`analyze` — one algorithm against gradient descent on its landscape, from the same
  initial points, for a fixed number of steps, followed by windows of further steps (random
  trajectory data); the measures of the ``"analyze"`` study (sharpness, variance–flatness,
  the variance principle, alignment, condensation, the implicit regularizer).
* :func:`compare` — several algorithms and gradient descent on one landscape, each trained from
  the same initial points until its training loss reaches the same target; the measures of the
  ``"compare"`` study (sharpness, the variance principle, alignment, the implicit regularizer,
  test accuracy).

Both train with the one loop (:func:`~smetool.algorithms.training.train`, on
:meth:`Algorithm.step <smetool.algorithms.Algorithm.step>`), hand the trained
:class:`~smetool.analysis.study.Study` to every :class:`~smetool.analysis.measure.Measure` of the
study and return a :class:`~smetool.analysis.report.StudyReport`. Every random number comes from
:class:`numpy.random.SeedSequence` of ``settings.seed`` and a key (initial points, training of
algorithm ``i``, measure and algorithm), so the numbers of one measure or algorithm do not
depend on the others.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024; Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI
46(6), 2024; Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022, 2021; Y. Feng, Y. Tu, PNAS 118(9),
2021.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace

from torch import Tensor
from tqdm.auto import tqdm

from ..algorithms.base import Algorithm
from ..algorithms.gradient import GradientDescent
from ..algorithms.training import Trajectory, landscape_of, train
from ..checks import check_lr, check_positive, check_positive_int
from ..models.landscape import Landscape
from .measure import registered_measures
from .report import StudyReport, collect_references
from .study import STREAM_TRAINING, Settings, Study, init_seeds, seeded_generator

__all__ = ["analyze", "compare", "initial_points", "REFERENCE"]

REFERENCE = "gd"
"""The label of the reference algorithm (gradient descent) in every study."""

Run = tuple[str, Algorithm, float]


def initial_points(landscape: Landscape, n_seeds: int, seed: int = 0) -> Tensor:
    """``n_seeds`` random initial points of ``landscape`` ``(n_seeds, D)``, point ``s`` drawn
    with the seed ``chunk_seed(seed, 0, s)`` (:meth:`Landscape.random_init
    <smetool.models.landscape.Landscape.random_init>`)."""
    return landscape.initial_points(n_seeds, init_seeds(seed, n_seeds))


def _check_inits(inits: Tensor, landscape: Landscape) -> Tensor:
    if not isinstance(inits, Tensor) or inits.ndim != 2 or inits.shape[1] != landscape.n_params \
            or inits.shape[0] < 2:
        shape = tuple(inits.shape) if isinstance(inits, Tensor) else type(inits).__name__
        raise ValueError(f"`inits` must have shape (P ≥ 2, {landscape.n_params}); got {shape}.")
    return inits


def _check_runs(runs: Sequence[Run], landscape: Landscape) -> list[Run]:
    labels = [label for label, _, _ in runs]
    if REFERENCE in labels or len(set(labels)) != len(labels):
        raise ValueError(f"algorithm labels must be distinct and not {REFERENCE!r} (the "
                         f"reference); got {', '.join(labels)}.")
    for label, algorithm, lr in runs:
        if landscape_of(algorithm) is not landscape:
            raise ValueError(f"every algorithm must train the same landscape; {label!r} trains "
                             f"{landscape_of(algorithm).label or 'another'}.")
        check_lr(lr, label)
    return list(runs)


def _run(kind: str, runs: list[Run], inits: Tensor, *, steps: int, target: float | None,
         check_every: int | None, settings: Settings, test: Landscape | None, progress: bool,
         out_dir: str | os.PathLike | None, config: dict | None) -> StudyReport:
    landscape = landscape_of(runs[0][1])
    clock = [time.perf_counter()]
    W = max(settings.windows, default=0)
    trajectories: dict[str, Trajectory] = {}
    windows: dict[str, Tensor] = {}
    with tqdm(total=len(runs) * steps + (len(runs) - 1) * W, disable=not progress,
              desc=f"{kind} {landscape.label}", unit="step") as bar:
        for i, (label, algorithm, lr) in enumerate(runs):
            bar.set_postfix_str(label)
            gen = seeded_generator(settings.seed, STREAM_TRAINING, i)
            trajectories[label] = traj = train(
                algorithm, inits, lr=lr, steps=steps, generator=gen, target=target,
                check_every=check_every, label=label, progress=bar.update)
            if W and i:  # random trajectory data of the compared (not the reference, run 0)
                window = train(algorithm, traj.final, lr=lr, steps=W, generator=gen,
                               check_every=W, keep_last=W, label=label,
                               progress=bar.update).window
                assert window is not None
                windows[label] = window
    clock.append(time.perf_counter())
    study = Study(landscape, inits, {label: a for label, a, _ in runs}, trajectories, REFERENCE,
                  settings, windows, test)
    chosen = tuple(m for m in registered_measures(kind) if m.applies(study))
    measurements = {m.name: m.run(study) for m in chosen}
    clock.append(time.perf_counter())
    cfg = {"landscape": landscape.label or type(landscape).__name__,
           "n_params": landscape.n_params, "n_seeds": inits.shape[0], "steps": steps,
           "target": target, "lrs": {label: lr for label, _, lr in runs},
           "algorithms": {label: repr(a) for label, a, _ in runs}, "reference": REFERENCE,
           "settings": settings.to_dict(), "measures": [m.name for m in chosen],
           "hessian_method": study.hessian(REFERENCE)[0].method,
           "seconds": {"training": round(clock[1] - clock[0], 1),
                       "measurements": round(clock[2] - clock[1], 1)}, **(config or {})}
    report = StudyReport(kind, cfg, trajectories, measurements,
                         collect_references(study, chosen), study, chosen)
    return report if out_dir is None else report.write(out_dir)


def analyze(algorithm: Algorithm, inits: Tensor, *, lr: float, steps: int,
            windows: Sequence[int] = (100, 1000), reference_lr: float | None = None,
            settings: Settings | None = None, label: str | None = None, progress: bool = True,
            out_dir: str | os.PathLike | None = None, config: dict | None = None) -> StudyReport:
    """Train ``algorithm`` and gradient descent from ``inits`` and decide the papers' findings.

    Parameters
    ----------
    algorithm : Algorithm
        With a landscape (``HasLandscape``).
    inits : Tensor, (P, D)
        One initial point per seed, ``P ≥ 2`` (the verdicts need a spread; use ≥ 5), e.g.
        :func:`initial_points`.
    lr : float
        The algorithm's learning rate.
    steps : int
        Training steps of each algorithm.
    windows : sequence of int
        Lengths ``T`` (≥ 20 steps each) of the trajectory windows, all taken from one window of
        ``max(windows)`` further steps after training; empty for none.
    reference_lr : float, optional
        Gradient descent's learning rate (default ``lr``).
    settings : Settings, optional
        The measures' knobs (:class:`~smetool.analysis.study.Settings`); its ``windows`` are
        replaced by ``windows``.
    label : str, optional
        The algorithm's name in the report (default its ``name``).
    progress : bool
        A tqdm bar over all steps.
    out_dir : path, optional
        Where to write ``report.json`` and the figures.
    config : dict, optional
        Extra settings recorded in the report.

    Returns
    -------
    StudyReport

    Raises
    ------
    ValueError, TypeError
        On invalid arguments (each named) or a training run that diverges.
    """
    landscape = landscape_of(algorithm)
    inits = _check_inits(inits, landscape)
    steps = check_positive_int(steps, "steps")
    windows = tuple(sorted({check_positive_int(w, "windows") for w in windows}))
    if windows and windows[0] < 20:
        raise ValueError(f"`windows` must be step counts ≥ 20; got {windows!r}.")
    settings = replace(settings or Settings(), windows=windows)
    if windows and settings.n_components >= windows[0]:
        raise ValueError(f"`n_components` must be below the shortest window ({windows[0]}); got "
                         f"{settings.n_components}.")
    if settings.n_noise <= settings.n_components:
        raise ValueError(f"`n_noise` must exceed n_components ({settings.n_components}); got "
                         f"{settings.n_noise}.")
    lr = check_lr(lr)
    reference = GradientDescent(landscape, inits[0])
    runs = _check_runs([(label or algorithm.name, algorithm, lr)], landscape)
    return _run("analyze", [(REFERENCE, reference, check_lr(reference_lr or lr))] + runs, inits,
                steps=steps, target=None, check_every=None, settings=settings, test=None,
                progress=progress, out_dir=out_dir, config=config)


def compare(runs: Sequence[Run], inits: Tensor, *, target: float, max_steps: int,
            reference_lr: float, test: Landscape | None = None, check_every: int = 10,
            settings: Settings | None = None, progress: bool = True,
            out_dir: str | os.PathLike | None = None, config: dict | None = None) -> StudyReport:
    """Train several algorithms and gradient descent to the same training loss and compare them.

    Parameters
    ----------
    runs : sequence of (label, Algorithm, lr)
        The algorithms, all on one landscape (``HasLandscape``), with their learning rates.
    inits : Tensor, (P, D)
        One initial point per seed, shared by every algorithm (``P ≥ 2``; use ≥ 5).
    target : float
        Each path trains until its training loss first falls to ``target`` (checked every
        ``check_every`` steps) and stops there.
    max_steps : int
        The most steps a path may take; a path that does not reach the target by then is
        reported (``Trajectory.reached``) and measured where it stopped.
    reference_lr : float
        Gradient descent's learning rate.
    test : Landscape, optional
        Held-out data (the same model on other points), for test accuracy.
    check_every : int
        Steps between checks of the loss.
    settings, progress, out_dir, config
        As :func:`analyze` (no trajectory windows).

    Returns
    -------
    StudyReport
        Its trajectories record where each path stopped and whether it reached the target.

    Raises
    ------
    ValueError, TypeError
        An invalid argument (the message names it), algorithms on different landscapes, or a
        run whose iterates become non-finite.
    """
    if not runs:
        raise ValueError("`runs` must name at least one algorithm; got none.")
    landscape = landscape_of(runs[0][1])
    inits = _check_inits(inits, landscape)
    runs = _check_runs(runs, landscape)
    target = check_positive(target, "target")
    settings = replace(settings or Settings(), windows=())
    reference = GradientDescent(landscape, inits[0])
    return _run("compare", [(REFERENCE, reference, check_lr(reference_lr))] + runs, inits,
                steps=check_positive_int(max_steps, "max_steps"), target=target,
                check_every=check_positive_int(check_every, "check_every"), settings=settings,
                test=test, progress=progress, out_dir=out_dir, config=config)
