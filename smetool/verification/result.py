"""The outcome of :func:`smetool.verify`: the weak-error table, the fitted orders, the report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..bibliography import Reference, format_citation
from ..montecarlo import WeakErrorTable
from ..plotting import plot_weak_errors
from ..stats import OrderFit

__all__ = ["VerifyResult", "VerifyRow"]


@dataclass(frozen=True)
class VerifyRow:
    """One learning rate × test function × save time of a :class:`VerifyResult` (a view of its
    table, for reports and CSV files).

    ``error = discrete_mean − sme_mean`` with standard error ``stderr``. ``solver_error`` is the
    SME solver's share of ``error``: the coupled difference ``E g(SME at h) − E g(SME at 2h)``
    divided by ``2^p − 1`` for a scheme of weak order ``p`` (Richardson), i.e.
    ``−(E g(SME at h) − E g(exact SME))`` to leading order, with its standard error
    ``solver_stderr``.
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
        """The row as a dict (CSV columns)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`smetool.verify`.

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
    weak_errors : WeakErrorTable
        The weak errors (``labels = ("discrete", "SME")``, steps = learning rates) with the
        coupled solver-error estimates.
    fits : dict
        Test function → :class:`~smetool.OrderFit` of the error at the horizon.
    seconds : float
        Wall-clock time.
    settings : dict
        Everything else needed to repeat the run (seed, dtype, device, problem description).
    unfitted : dict
        Test function → why no order could be fitted (too few errors above the noise).
    references : tuple of Reference
        The papers behind the solver and the plug-in that ran (:meth:`citation`).
    solver_order : float
        The SME solver's weak order ``p`` (the solver error is the coupled difference over
        ``2^p − 1``).
    """

    algorithm: str
    order: int
    horizon: float
    lrs: tuple[float, ...]
    n_paths: int
    steps_per_lr: int
    method: str
    weak_errors: WeakErrorTable = field(repr=False)
    fits: dict[str, OrderFit]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    unfitted: dict[str, str] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    solver_order: float = 1.0

    @property
    def rows(self) -> tuple[VerifyRow, ...]:
        """One row per learning rate and test function at every save time, in run order."""
        t = self.weak_errors
        scale = 2.0**self.solver_order - 1.0
        out = []
        for j, lr in enumerate(t.steps):
            for k, name in enumerate(t.names):
                for s, time in enumerate(t.times):
                    coarse, coarse_se = t.reference_coarse_differences, t.reference_coarse_stderrs
                    out.append(VerifyRow(
                        lr=float(lr), test_function=name, time=float(time),
                        discrete_mean=float(t.approx_means[k, s, j]),
                        discrete_stderr=float(t.approx_stderrs[k, s, j]),
                        sme_mean=float(t.reference_means[k, s, j]),
                        sme_stderr=float(t.reference_stderrs[k, s, j]),
                        error=float(t.errors[k, s, j]), stderr=float(t.stderrs[k, s, j]),
                        solver_error=math.nan if coarse is None else float(coarse[k, s, j]) / scale,
                        solver_stderr=math.nan if coarse_se is None else float(coarse_se[k, s, j]) / scale,
                    ))
        return tuple(out)

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
            "references": [ref.key for ref in self.references],
        }

    def citation(self) -> str:
        """BibTeX for smetool, the SME solver and the plug-in papers of this run."""
        return format_citation(self.references)

    def to_json(self, path: str) -> None:
        """Write :meth:`to_dict` to ``path``."""
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    def plot(self, path: str | None = None, *, ax: Any = None) -> Any:
        """Log–log plot of |error| against the learning rate, one series per test function.

        Error bars are ±2 standard errors; each fitted slope is drawn with a reference line of the
        tested order. Needs matplotlib (``pip install 'smetool[plots]'``). Returns the figure.
        """
        if not self.fits:
            raise ValueError("no test function has a fitted order to plot (see `unfitted`).")
        return plot_weak_errors(
            self.weak_errors, names=list(self.fits), fits=self.fits, reference_order=self.order,
            ax=ax, path=path, xlabel="learning rate ε", ylabel="|E g(discrete) − E g(SME)|",
            title=f"{self.algorithm}: weak error of the order-{self.order} SME")

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
            lo, hi = fit.ci
            ratios = " ".join(f"{x:.2f}" for x in fit.ratios if math.isfinite(x))
            note = f"CI contains {self.order}" if fit.contains(self.order) else f"CI excludes {self.order}"
            if fit.flagged:
                note += f"; {len(fit.flagged)} point(s) below the noise excluded"
            lines.append(f"{name:>14} {fit.slope:>7.3f} [{lo:>7.3f}, {hi:>7.3f}]  {ratios:<24} {note}")
        for name, why in self.unfitted.items():
            lines.append(f"{name:>14} no fit: {why}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        slopes = ", ".join(f"{k}: {v.slope:.2f}" for k, v in self.fits.items())
        return (f"VerifyResult(algorithm={self.algorithm!r}, order={self.order}, "
                f"lrs={list(self.lrs)}, n_paths={self.n_paths}, slopes={{{slopes}}})")
