"""``verify()``: the weak-error convergence test of an SME against its discrete algorithm.

For each learning rate ``lr`` the discrete algorithm runs ``T / lr`` steps on ``N`` paths and the
SME is solved on ``N`` independent paths over ``[0, T]`` with step ``h = lr / r``; the test
functions' means give the weak error ``E g(x_{T/lr}) − E g(X_T)`` with its standard error, and
:func:`smetool.weak.fit_order` fits the order with a confidence interval.

The SME's own discretisation error is measured in the same run: every SME path is integrated at
``h`` and, on the same Brownian path (common random numbers), at ``2h``; the coupled difference
estimates the solver error with a small standard error and is reported next to the weak error.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .algorithms.base import Algorithm, TestFunction
from .brownian import GaussianIncrements
from .integrate import _as_solver, _checked_diffusion
from .montecarlo import chunk_seed, evaluate_test_functions, run_chunks
from .noise import brownian_dim
from .sde import SDE, NoiseKind
from .solvers import SmallNoiseHeun, Solver
from .weak import WeakOrderWarning, fit_order

__all__ = ["verify", "VerifyResult", "VerifyRow", "check_learning_rates"]


@dataclass(frozen=True)
class VerifyRow:
    """One learning rate × test function × save time of a :class:`VerifyResult`.

    ``error = discrete_mean − sme_mean`` with standard error ``stderr`` (the two sides are
    independent). ``solver_error`` is the SME solver's share of ``error``: the coupled difference
    ``E g(SME at h) − E g(SME at 2h)`` divided by ``2^p − 1`` for a scheme of weak order ``p``
    (Richardson), i.e. ``−(E g(SME at h) − E g(exact SME))`` to leading order, with its standard
    error ``solver_stderr``.
    """

    lr: float
    test_function: str
    time: float
    discrete_mean: float
    discrete_stderr: float
    sme_mean: float
    sme_stderr: float
    error: float
    stderr: float
    solver_error: float
    solver_stderr: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`.

    Attributes
    ----------
    algorithm : str
    order : int
        The SME order tested.
    horizon : float
    lrs : tuple of float
    n_paths : int
        Paths per side (discrete and SME) per learning rate.
    steps_per_lr : int
        ``r``: the SME step is ``lr / r``.
    method : str
        The SME solver.
    rows : tuple of VerifyRow
    fits : dict
        Test function → :class:`~smetool.weak.OrderFit` of the error at the horizon.
    unfitted : dict
        Test function → why no order could be fitted (too few errors above the noise).
    seconds : float
        Wall-clock time.
    settings : dict
        Everything else needed to repeat the run (seed, dtype, device, problem description).
    """

    algorithm: str
    order: int
    horizon: float
    lrs: tuple[float, ...]
    n_paths: int
    steps_per_lr: int
    method: str
    rows: tuple[VerifyRow, ...]
    fits: dict[str, Any]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    unfitted: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``algorithm``, ``order``, ``rows`` and ``fits`` (slope, ci) among others."""
        fits = []
        for name, fit in self.fits.items():
            d = fit.to_dict()
            fits.append({"test_function": name, "slope": d["slope"], "ci": list(d["ci"]), **{
                k: v for k, v in d.items() if k not in ("slope", "ci")}})
        return {
            "algorithm": self.algorithm,
            "order": self.order,
            "horizon": self.horizon,
            "lrs": list(self.lrs),
            "n_paths": self.n_paths,
            "steps_per_lr": self.steps_per_lr,
            "method": self.method,
            "seconds": self.seconds,
            "settings": self.settings,
            "rows": [r.to_dict() for r in self.rows],
            "fits": fits,
            "unfitted": dict(self.unfitted),
        }

    def citation(self) -> str:
        """BibTeX for smetool, the SME solver and the plug-in papers of this run
        (:func:`smetool.citation` with ``solver=method`` and the plug-ins in ``settings``)."""
        from .citation import citation

        return citation(solver=self.method, plugin=self.settings.get("plugins") or None)

    def to_json(self, path: str) -> None:
        """Write :meth:`to_dict` to ``path``."""
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    def plot(self, path: str | None = None, *, ax: Any = None) -> Any:
        """Log–log plot of |error| against the learning rate, one series per test function.

        Error bars are ±2 standard errors; each fitted slope is drawn with a reference line of the
        tested order. Needs matplotlib (``pip install 'smetool[plots]'``). Returns the figure.
        """
        from .plotting import _pyplot

        if not self.fits:
            raise ValueError("no test function has a fitted order to plot (see `unfitted`).")
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 4.5)) if ax is None else (ax.figure, ax)
        for name, fit in self.fits.items():
            h, e, se = (np.array(v) for v in (fit.steps, fit.errors, fit.stderrs))
            used = np.array(fit.used)
            y = np.abs(e)
            low = np.minimum(2 * se, y * (1 - 1e-9))
            lo, hi = fit.ci
            bars = ax.errorbar(h, y, yerr=[low, 2 * se], fmt="o", capsize=3,
                               label=f"{name}: slope {fit.slope:.2f} [{lo:.2f}, {hi:.2f}]")
            color = bars[0].get_color()
            if (~used).any():  # points below the noise: hollow, not in the fit
                ax.plot(h[~used], y[~used], "o", mfc="white", color=color)
            hh = np.geomspace(h.min(), h.max(), 50)
            ax.plot(hh, fit.constant * hh**fit.slope, "-", color=color, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lrs = sorted(self.lrs)
        top = max(abs(r.error) for r in self.rows)
        ax.plot(lrs, [top * (lr / lrs[-1]) ** self.order for lr in lrs], "k:",
                label=f"slope {self.order}")
        ax.set_xlabel("learning rate ε")
        ax.set_ylabel("|E g(discrete) − E g(SME)|")
        ax.set_title(f"{self.algorithm}: weak error of the order-{self.order} SME")
        ax.legend(fontsize=8)
        if path is not None:
            fig.savefig(path, dpi=120, bbox_inches="tight")
        return fig

    def table(self) -> str:
        """A plain-text table of errors (with |error|/SE and the solver-error share) and fits."""
        lines = [
            f"weak error of the order-{self.order} SME of {self.algorithm!r}: "
            f"E g(discrete) - E g(SME) at T = {self.horizon:g}, {self.n_paths} paths per side, "
            f"SME step lr/{self.steps_per_lr} ({self.method})",
            f"{'test function':>14} {'lr':>9} {'error':>11} {'std err':>9} {'|err|/SE':>8} "
            f"{'solver err':>11}",
        ]
        for r in self.rows:
            if r.time != self.horizon:
                continue
            snr = abs(r.error) / r.stderr if r.stderr > 0 else math.inf
            lines.append(
                f"{r.test_function:>14} {r.lr:>9.4g} {r.error:>+11.3e} {r.stderr:>9.2e} "
                f"{snr:>8.1f} {r.solver_error:>+11.1e}"
            )
        lines.append("")
        lines.append(f"{'test function':>14} {'slope':>7} {'95% CI':>17}  {'ratios':<24} note")
        for name, fit in self.fits.items():
            d = fit.to_dict()
            lo, hi = d["ci"]
            ratios = " ".join(f"{x:.2f}" for x in d.get("ratios", []) if x is not None)
            contains = lo <= self.order <= hi
            note = f"CI contains {self.order}" if contains else f"CI excludes {self.order}"
            flagged = d.get("flagged") or []
            if flagged:
                note += f"; {len(flagged)} point(s) below the noise excluded"
            lines.append(f"{name:>14} {d['slope']:>7.3f} [{lo:>7.3f}, {hi:>7.3f}]  {ratios:<24} {note}")
        for name, why in self.unfitted.items():
            lines.append(f"{name:>14} no fit: {why}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        slopes = ", ".join(f"{k}: {v.slope:.2f}" for k, v in self.fits.items())
        return (f"VerifyResult(algorithm={self.algorithm!r}, order={self.order}, "
                f"lrs={list(self.lrs)}, n_paths={self.n_paths}, slopes={{{slopes}}})")


def check_learning_rates(lrs: Sequence[float], horizon: float, name: str = "algorithm") -> list[int]:
    """Validate learning rates against a horizon; return the step counts ``T / lr``.

    Raises
    ------
    ValueError
        Fewer than two learning rates, a non-positive or repeated one, or a horizon that is not a
        whole multiple of one of them.
    """
    if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"{name}: `horizon` must be a positive number; got {horizon!r}.")
    lrs = list(lrs)
    if len(lrs) < 2:
        raise ValueError(f"{name}: `lrs` must hold at least two learning rates to fit an order; got {lrs}.")
    steps = []
    for lr in lrs:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"{name}: every learning rate in `lrs` must be positive; got {lr!r}.")
        k = round(horizon / lr)
        if k < 1 or abs(k * lr - horizon) > 1e-9 * horizon:
            raise ValueError(
                f"{name}: `horizon` ({horizon:g}) must be a whole multiple of every learning rate; "
                f"got lr={lr:g} ({horizon / lr:.6g} steps)."
            )
        steps.append(k)
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"{name}: `lrs` must be distinct; got {lrs}.")
    return steps


def _check_plugin(algorithm: Algorithm, name: str, lr: float, order: int, solver: Solver,
                  tests: Mapping[str, TestFunction], dtype: torch.dtype,
                  device: torch.device) -> SDE:
    """Probe a plug-in on two paths before the long loops: shapes of its state, step, SME drift
    and diffusion, test-function outputs, and whether the solver can take its noise kind. Every
    error names the plug-in and the learning rate."""
    where = f"{name} (lr={lr:g})"
    x0 = algorithm.initial_state(2, dtype=dtype, device=device)
    if not isinstance(x0, Tensor) or x0.ndim != 2 or x0.shape[0] != 2 or not x0.is_floating_point():
        shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"{where}: initial_state(2) must return a floating-point (2, D) tensor; got {shape}.")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{where}: initial_state holds NaN or inf.")
    D = x0.shape[1]
    x1 = algorithm.step(x0.clone(), lr, torch.Generator(device=device).manual_seed(0))
    if not isinstance(x1, Tensor) or tuple(x1.shape) != (2, D):
        shape = tuple(x1.shape) if isinstance(x1, Tensor) else type(x1).__name__
        raise ValueError(f"{where}: step(x, lr, generator) must return the shape of x, (2, {D}); got {shape}.")
    sde = algorithm.sme(lr, order)
    if not isinstance(sde, SDE):
        raise TypeError(f"{where}: sme(lr, order) must return an smetool.SDE; got {type(sde).__name__}.")
    try:
        solver.check(sde, GaussianIncrements())
    except ValueError as exc:  # UnsupportedError included: keep its type, add the plug-in
        raise type(exc)(f"{where}: {exc}") from None
    drift = sde.drift(0.0, x0)
    if not isinstance(drift, Tensor) or tuple(drift.shape) != (2, D):
        shape = tuple(drift.shape) if isinstance(drift, Tensor) else type(drift).__name__
        raise ValueError(f"{where}: the SME's drift(t, x) must have the shape of x, (2, {D}); got {shape}.")
    try:
        if sde.noise_kind is NoiseKind.SAMPLED:
            zeta = sde.sample_noise(0.0, x0, torch.Generator(device=device).manual_seed(0))
            if not isinstance(zeta, Tensor) or tuple(zeta.shape) != (2, D):
                raise ValueError(f"sample_noise(t, x, generator) must return (2, {D}); got "
                                 f"{tuple(zeta.shape) if isinstance(zeta, Tensor) else type(zeta).__name__}.")
        else:
            _checked_diffusion(sde, 0.0, x0)
        evaluate_test_functions(tests, x0.unsqueeze(0))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return sde


def _count_nonfinite(values: Tensor) -> int:
    """Paths (columns of ``(K, P)``) with a non-finite value of any test function."""
    return int((~torch.isfinite(values)).any(dim=0).sum())


def _coupled_sme(
    sde, solver: Solver, x0: Tensor, n_steps: int, h: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The SME at step ``h`` and at ``2h`` on one Brownian path; returns the two final states.

    The coarse increment is the sum of two fine ones. SAMPLED noise cannot be coupled this way
    (its draws are not Brownian increments), so its coarse run uses independent draws.
    """
    x_f, x_c = x0.clone(), x0.clone()
    P, D = x0.shape
    if sde.noise_kind is NoiseKind.SAMPLED:
        for k in range(n_steps):
            x_f = solver.step(sde, k * h, x_f, h, None, gen)
        for k in range(n_steps // 2):
            x_c = solver.step(sde, 2 * k * h, x_c, 2 * h, None, gen)
        return x_f, x_c
    M = brownian_dim(sde, _checked_diffusion(sde, 0.0, x0), D)
    inc = GaussianIncrements()
    for k in range(0, n_steps, 2):
        t = k * h
        dW1 = inc.sample(t, t + h, (P, M), gen, x0.dtype, x0.device)
        dW2 = inc.sample(t + h, t + 2 * h, (P, M), gen, x0.dtype, x0.device)
        x_f = solver.step(sde, t, x_f, h, dW1, gen)
        x_f = solver.step(sde, t + h, x_f, h, dW2, gen)
        x_c = solver.step(sde, t, x_c, 2 * h, dW1 + dW2, gen)
    return x_f, x_c


def verify(
    algorithm: Algorithm,
    lrs: Sequence[float],
    *,
    horizon: float,
    n_paths: int,
    order: int = 1,
    test_functions: Mapping[str, TestFunction] | None = None,
    steps_per_lr: int = 4,
    method: Solver | str | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    min_snr: float = 3.0,
    confidence: float = 0.95,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
) -> VerifyResult:
    """Measure the weak error of an SME against its discrete algorithm and fit the weak order.

    Parameters
    ----------
    algorithm : Algorithm
        Any plug-in meeting :class:`smetool.algorithms.Algorithm` (dropout, SGD, …).
    lrs : sequence of float
        Learning rates ``ε`` (at least two); ``horizon / ε`` must be whole for each.
    horizon : float
        ``T`` in SDE time (``T / ε`` steps of the algorithm).
    n_paths : int
        Paths per side and learning rate.
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
    seed : int
        Chunk ``c`` of learning rate ``i`` draws from ``chunk_seed(seed, i, c, side)``.
    chunk_size : int, optional
        Paths per chunk (default: all at once up to 20,000).
    dtype, device
        Of the simulation; the statistics are accumulated in float64 on the CPU.
    min_snr : float
        Errors below ``min_snr`` standard errors are flagged and left out of the fit.
    confidence : float
        Of the order's confidence interval.
    progress : bool
        Show progress bars.
    checkpoint_dir : path, optional
        A folder for one checkpoint per learning rate (``lr<i>.pt``), written after every chunk: a
        killed run restarted with the same arguments resumes and gives the same numbers; a
        checkpoint of other arguments is refused.
    settings : dict, optional
        Extra information stored in the result (e.g. the problem's description).

    Returns
    -------
    VerifyResult

    Raises
    ------
    ValueError
        Bad learning rates, horizon, order, path count or test functions, naming the plug-in.

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I", JMLR 20 (2019) — the weak-approximation statement tested here.
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024 — the dropout SME.
    """
    name = getattr(algorithm, "name", type(algorithm).__name__)
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"`algorithm` must implement smetool.algorithms.Algorithm (initial_state, step, sme, "
            f"test_functions); got {type(algorithm).__name__}."
        )
    steps = check_learning_rates(lrs, horizon, name)
    if order not in algorithm.sme_orders:
        raise ValueError(f"{name}: `order` must be one of {algorithm.sme_orders}; got {order!r}.")
    if int(n_paths) != n_paths or n_paths < 2:
        raise ValueError(f"{name}: `n_paths` must be an integer ≥ 2 (a variance needs two); got {n_paths!r}.")
    if int(steps_per_lr) != steps_per_lr or steps_per_lr < 2 or steps_per_lr % 2:
        raise ValueError(f"{name}: `steps_per_lr` must be an even integer ≥ 2; got {steps_per_lr!r}.")
    solver = SmallNoiseHeun() if method is None else _as_solver(method)
    tests = dict(algorithm.test_functions() if test_functions is None else test_functions)
    if not tests:
        raise ValueError(f"{name}: `test_functions` must name at least one test function; got none.")
    device = torch.device(device)
    chunk = int(chunk_size) if chunk_size is not None else min(int(n_paths), 20_000)
    start = time.perf_counter()

    rows: list[VerifyRow] = []
    for i, (lr, k_steps) in enumerate(zip(lrs, steps)):
        sde = _check_plugin(algorithm, name, lr, order, solver, tests, dtype, device)
        h = lr / steps_per_lr
        n_sme = k_steps * steps_per_lr

        def evaluate(n: int, c: int, lr=lr, k_steps=k_steps, sde=sde, h=h, n_sme=n_sme, i=i):
            gen = torch.Generator(device=device)
            gen.manual_seed(chunk_seed(seed, i, c, 0))
            x = algorithm.initial_state(n, dtype=dtype, device=device)
            for _ in range(k_steps):
                x = algorithm.step(x, lr, gen)
            disc = evaluate_test_functions(tests, x.unsqueeze(0))[:, 0]
            gen.manual_seed(chunk_seed(seed, i, c, 1))
            x0 = algorithm.initial_state(n, dtype=dtype, device=device)
            fine, coarse = _coupled_sme(sde, solver, x0, n_sme, h, gen)
            vals = evaluate_test_functions(tests, torch.stack([fine, coarse]))
            bad = {side: _count_nonfinite(v) for side, v in
                   (("discrete", disc), ("SME", vals[:, 0]), ("coarse SME", vals[:, 1]))}
            if any(bad.values()):
                # The checkpoint (if any) keeps the chunks finished before this one.
                raise FloatingPointError(
                    f"{name}: at lr={lr:g}, chunk {c} ({n} paths) diverged by T = {horizon:g}: "
                    + ", ".join(f"{k} non-finite {side} paths" for side, k in bad.items() if k)
                    + ". A smaller learning rate, or for the SME a larger steps_per_lr, may help."
                )
            return {"discrete": disc, "sme": vals[:, 0], "solver": vals[:, 0] - vals[:, 1]}

        fingerprint = {
            "kind": "verify", "algorithm": name, "lr": lr, "lr_index": i, "seed": seed,
            "order": int(order), "horizon": float(horizon), "n_paths": int(n_paths),
            "chunk_size": chunk, "steps_per_lr": int(steps_per_lr), "method": solver.name,
            "dtype": str(dtype), "tests": list(tests), "algorithm_repr": repr(algorithm),
        }
        checkpoint = None
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            checkpoint = Path(checkpoint_dir) / f"lr{i}.pt"
        acc = run_chunks(evaluate, int(n_paths), chunk, fingerprint=fingerprint,
                         checkpoint=checkpoint, checkpoint_every=1, progress=progress,
                         desc=f"lr={lr:g}")
        d, s, se = acc["discrete"], acc["sme"], acc["solver"]
        for j, tname in enumerate(tests):
            # Coupled fine-minus-coarse estimates the coarse run's error; for a scheme of order p
            # the fine run's error is that over (2^p − 1).
            p = solver.weak_order
            rows.append(VerifyRow(
                lr=float(lr), test_function=tname, time=float(horizon),
                discrete_mean=float(d.mean[j]), discrete_stderr=float(d.stderr[j]),
                sme_mean=float(s.mean[j]), sme_stderr=float(s.stderr[j]),
                error=float(d.mean[j] - s.mean[j]),
                stderr=float(math.hypot(float(d.stderr[j]), float(s.stderr[j]))),
                solver_error=float(se.mean[j]) / (2**p - 1),
                solver_stderr=float(se.stderr[j]) / (2**p - 1),
            ))

    fits: dict[str, Any] = {}
    unfitted: dict[str, str] = {}
    for tname in tests:
        sel = [r for r in rows if r.test_function == tname and r.time == horizon]
        try:
            with warnings.catch_warnings():
                # Flagged points and sign changes are reported in the result and its table.
                warnings.simplefilter("ignore", WeakOrderWarning)
                fits[tname] = fit_order(
                    [r.lr for r in sel], [r.error for r in sel], [r.stderr for r in sel],
                    min_snr=min_snr, confidence=confidence,
                )
        except ValueError as exc:  # too few resolved points: report it, keep the error table
            unfitted[tname] = str(exc)
    from .citation import plugins_of

    info = {"seed": seed, "dtype": str(dtype).replace("torch.", ""), "device": device.type,
            "min_snr": min_snr, "confidence": confidence, "plugins": plugins_of(algorithm)}
    info.update(dict(settings or {}))
    return VerifyResult(
        algorithm=name, order=int(order), horizon=float(horizon), lrs=tuple(float(x) for x in lrs),
        n_paths=int(n_paths), steps_per_lr=int(steps_per_lr), method=solver.name,
        rows=tuple(rows), fits=fits, seconds=time.perf_counter() - start, settings=info,
        unfitted=unfitted,
    )
