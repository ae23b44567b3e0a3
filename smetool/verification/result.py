"""The outcome of :func:`smetool.verify`: the weak-error table, the fitted orders, the report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..bibliography import Reference, format_citation
from ..jsonutil import json_safe
from ..montecarlo import WeakErrorTable
from ..plotting import plot_weak_errors
from ..stats import OrderFit, OrderVerdict, Verdict

__all__ = ["VerifyResult", "VerifyRow", "ControlResult"]


@dataclass(frozen=True)
class VerifyRow:
    """One learning rate × test function × save time of a :class:`VerifyResult` (a view of its
    table, for reports and CSV files).

    ``error = discrete_mean − sme_mean`` with standard error ``stderr``. ``solver_error`` is the
    SME solver's share of ``error``: the coupled difference ``E g(SME at h) − E g(SME at 2h)``
    divided by ``2^p − 1`` for a scheme of weak order ``p`` (Richardson), i.e.
    ``−(E g(SME at h) − E g(exact SME))`` to leading order, with its standard error
    ``solver_stderr``. ``variance_reduction`` is the factor by which the control variates cut
    the variance of the error estimate (1 without them).
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
    variance_reduction: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The row as a dict (CSV columns)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class ControlResult:
    """A negative control of a verification: a wrong SME against the same discrete paths.

    Attributes
    ----------
    name, why : str
        From the plug-in's :class:`~smetool.algorithms.NegativeControl`.
    expected_slope : float
        The weak order the wrong SME shows.
    fits : dict of str to OrderFit
        Its fitted orders per test function.
    verdicts : dict of str to OrderVerdict
        Its verdicts as an SME of the tested order: a right verification gives **fail**.
    weak_errors : WeakErrorTable
        Its errors.
    """

    name: str
    why: str
    expected_slope: float
    fits: dict[str, OrderFit]
    verdicts: dict[str, OrderVerdict]
    weak_errors: WeakErrorTable = field(repr=False)

    @property
    def rejected(self) -> dict[str, bool]:
        """Per test function: whether this wrong SME was rejected (its verdict is fail)."""
        return {name: v.failed for name, v in self.verdicts.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name, "why": self.why, "expected_slope": self.expected_slope,
            "fits": {k: {"slope": f.slope, "ci": list(f.ci)} for k, f in self.fits.items()},
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "rejected": self.rejected,
            "errors": json_safe(self.weak_errors.errors[:, -1]),
            "stderrs": json_safe(self.weak_errors.stderrs[:, -1]),
        }


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
    verdicts : dict of str to OrderVerdict
        Per test function: pass (the interval contains the order and excludes the neighbouring
        orders, every point resolved, no sign change), fail or inconclusive.
    controls : dict of str to ControlResult
        The negative controls that ran.
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
    verdicts: dict[str, OrderVerdict] = field(default_factory=dict)
    controls: dict[str, ControlResult] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        """Pass when every test function passes, fail when one fails, else inconclusive."""
        found = [v.verdict for v in self.verdicts.values()]
        if found and all(v is Verdict.PASS for v in found):
            return Verdict.PASS
        if any(v is Verdict.FAIL for v in found):
            return Verdict.FAIL
        return Verdict.INCONCLUSIVE

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
                    cv = t.control_variate_factor
                    out.append(VerifyRow(
                        lr=float(lr), test_function=name, time=float(time),
                        discrete_mean=float(t.approx_means[k, s, j]),
                        discrete_stderr=float(t.approx_stderrs[k, s, j]),
                        sme_mean=float(t.reference_means[k, s, j]),
                        sme_stderr=float(t.reference_stderrs[k, s, j]),
                        error=float(t.errors[k, s, j]), stderr=float(t.stderrs[k, s, j]),
                        solver_error=math.nan if coarse is None else float(coarse[k, s, j]) / scale,
                        solver_stderr=math.nan if coarse_se is None else float(coarse_se[k, s, j]) / scale,
                        variance_reduction=1.0 if cv is None else float(cv[k, s, j]),
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
            "verdict": self.verdict.value,
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "controls": {k: c.to_dict() for k, c in self.controls.items()},
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
        """A plain-text report: the errors (|error|/SE, variance reduction, the solver's share),
        the fits with their verdicts, and the negative controls."""
        lines = [
            f"weak error of the order-{self.order} SME of {self.algorithm!r}: "
            f"E g(discrete) - E g(SME) at T = {self.horizon:g}, {self.n_paths} paths per side, "
            f"SME step lr/{self.steps_per_lr} ({self.method}"
            f"{', extrapolated' if self.settings.get('extrapolated') else ''}), control variates: "
            f"{self.settings.get('variance_reduction', 'none')}",
            f"{'test function':>14} {'lr':>9} {'error':>11} {'std err':>9} {'|err|/SE':>8} "
            f"{'var.red.':>8} "
            f"{'solver err' + (' (removed)' if self.settings.get('extrapolated') else ''):>11}",
        ]
        for r in self.rows:
            if r.time != self.horizon:
                continue
            snr = abs(r.error) / r.stderr if r.stderr > 0 else math.inf
            lines.append(
                f"{r.test_function:>14} {r.lr:>9.4g} {r.error:>+11.3e} {r.stderr:>9.2e} "
                f"{snr:>8.1f} {r.variance_reduction:>8.3g} {r.solver_error:>+11.1e}"
            )
        lines.append("")
        lines.append(f"{'test function':>14} {'slope':>7} {'95% CI':>17}  {'ratios':<17} "
                     f"{'order, next term':>16} {'95% CI':>17}  verdict")
        for name, verdict in self.verdicts.items():
            fit = self.fits.get(name)
            if fit is None:
                lines.append(f"{name:>14} {'':>7} {'':>17}  {'':<17} {'':>16} {'':>17}  {verdict}")
                continue
            lo, hi = fit.ci
            ratios = " ".join(f"{x:.2f}" for x in fit.ratios if math.isfinite(x))
            corrected = f"{'':>16} {'':>17}"
            if fit.corrected is not None:
                c = fit.corrected
                corrected = f"{c.order:>16.3f} [{c.ci[0]:>7.3f}, {c.ci[1]:>7.3f}]"
            lines.append(f"{name:>14} {fit.slope:>7.3f} [{lo:>7.3f}, {hi:>7.3f}]  {ratios:<17} "
                         f"{corrected}  {verdict}")
        if self.controls:
            lines.append("")
            lines.append(f"negative controls (wrong SMEs on the same random numbers; each must be "
                         f"rejected as an order-{self.order} SME):")
            for control in self.controls.values():
                lines.append(f"  {control.name}: {control.why} (expected slope "
                             f"{control.expected_slope:g})")
                for name, verdict in control.verdicts.items():
                    fit = control.fits.get(name)
                    shown = "no fit" if fit is None else (
                        f"slope {fit.slope:.3f} [{fit.ci[0]:.3f}, {fit.ci[1]:.3f}]")
                    if fit is not None and fit.corrected is not None:
                        c = fit.corrected
                        shown += f", next term {c.order:.3f} [{c.ci[0]:.3f}, {c.ci[1]:.3f}]"
                    status = "rejected" if verdict.failed else f"NOT rejected ({verdict})"
                    lines.append(f"    {name:>14} {shown}  {status}")
        elif self.control_note:
            lines += ["", self.control_note]
        lines.append(f"verdict: {self.verdict.value} ({self.seconds:.1f} s)")
        return "\n".join(lines)

    @property
    def control_note(self) -> str:
        """What the report says when no negative control ran ("" when one did)."""
        if self.controls:
            return ""
        if self.order == 1:
            return ("no negative control: at order 1 the noise covariance does not enter the "
                    "leading error, so an SME that differs only in its noise passes too.")
        return "no negative control was run."

    def __repr__(self) -> str:
        slopes = ", ".join(f"{k}: {v.slope:.2f}" for k, v in self.fits.items())
        return (f"VerifyResult(algorithm={self.algorithm!r}, order={self.order}, "
                f"lrs={list(self.lrs)}, n_paths={self.n_paths}, slopes={{{slopes}}})")
