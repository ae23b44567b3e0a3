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
from ..stats import OrderFit, SeriesVerdict, Verdict
from .judge import DetectionLimits
from .table_cells import series_verdict_cells, slope_cell

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
        From its :class:`~smetool.algorithms.NegativeControl`.
    expected_slope : float
        The weak order the wrong SME shows.
    fits : dict of str to OrderFit
        Its log–log slopes per test function (a picture).
    verdicts : dict of str to SeriesVerdict
        Its series verdicts as an SME of the tested order, at the check's level: a right
        verification gives **fail** on at least one test function.
    weak_errors : WeakErrorTable
        Its errors.
    hard : bool
        Built from the check's detection limits (:func:`~smetool.verification.judge.hard_controls`)
        rather than declared by the plug-in.
    """

    name: str
    why: str
    expected_slope: float
    fits: dict[str, OrderFit]
    verdicts: dict[str, SeriesVerdict]
    weak_errors: WeakErrorTable = field(repr=False)
    hard: bool = False

    @property
    def rejected_by(self) -> dict[str, bool]:
        """Per test function: whether it failed this wrong SME."""
        return {name: v.failed for name, v in self.verdicts.items()}

    @property
    def rejected(self) -> bool:
        """Whether the check fails this wrong SME (some test function fails it)."""
        return any(self.rejected_by.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name, "why": self.why, "expected_slope": self.expected_slope,
            "hard": self.hard,
            "fits": {k: {"slope": f.slope, "ci": list(f.ci)} for k, f in self.fits.items()},
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "rejected": self.rejected, "rejected_by": self.rejected_by,
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
        The SME solver's weak order ``p`` for the SME's noise kind (the leading power of the
        error expansion its Richardson extrapolation removes).
    verdicts : dict of str to SeriesVerdict
        Per test function: the series test (:func:`~smetool.judge_series`) at the level
        ``settings["alpha"]``: pass, fail or inconclusive.
    controls : dict of str to ControlResult
        The negative controls that ran (the hard ones flagged).
    detection_limits : dict of SMEPart to DetectionLimits
        The smallest relative error in the noise covariance and in the order-2 drift correction
        that this run fails, per test function.
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
    verdicts: dict[str, SeriesVerdict] = field(default_factory=dict)
    controls: dict[str, ControlResult] = field(default_factory=dict)
    detection_limits: dict[Any, DetectionLimits] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        """The check's verdict from the series verdicts of its test functions and its controls.

        **Fail** when a test function fails. **Pass** when none fails, every test function's
        errors are an acceptable series (none inconclusive for a lack of fit), at least one
        resolves the leading coefficient ``c_p`` (the run had an error to measure), and every
        negative control that ran is rejected (a check that cannot fail a wrong SME proves
        nothing). A test function that fits but cannot resolve its ``c_p`` adds no evidence
        either way and does not block a pass. **Inconclusive** otherwise (:attr:`reasons`).
        """
        found = list(self.verdicts.values())
        if any(v.failed for v in found):
            return Verdict.FAIL
        return Verdict.INCONCLUSIVE if self.reasons else Verdict.PASS

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the verdict is not a pass (empty for a pass)."""
        found = self.verdicts
        out = [f"{name}: {v}" for name, v in found.items() if v.failed or not v.acceptable]
        if found and not any(v.passed for v in found.values()):
            out.append("no test function resolves the leading error coefficient")
        out += [f"negative control {c.name!r} not rejected" for c in self.controls.values()
                if not c.rejected]
        if not found:
            out.append("no test function")
        return tuple(out)

    @property
    def rows(self) -> tuple[VerifyRow, ...]:
        """One row per learning rate and test function at every save time, in run order."""
        t = self.weak_errors
        out = []
        for j, lr in enumerate(t.steps):
            for k, name in enumerate(t.names):
                for s, time in enumerate(t.times):
                    coarse, coarse_se = t.reference_solver_errors, t.reference_solver_stderrs
                    cv = t.control_variate_factor
                    out.append(VerifyRow(
                        lr=float(lr), test_function=name, time=float(time),
                        discrete_mean=float(t.approx_means[k, s, j]),
                        discrete_stderr=float(t.approx_stderrs[k, s, j]),
                        sme_mean=float(t.reference_means[k, s, j]),
                        sme_stderr=float(t.reference_stderrs[k, s, j]),
                        error=float(t.errors[k, s, j]), stderr=float(t.stderrs[k, s, j]),
                        solver_error=math.nan if coarse is None else float(coarse[k, s, j]),
                        solver_stderr=math.nan if coarse_se is None else float(coarse_se[k, s, j]),
                        variance_reduction=1.0 if cv is None else float(cv[k, s, j]),
                    ))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``algorithm``, ``order``, ``rows``, ``verdicts`` (the series tests),
        ``detection_limits``, ``controls`` and ``fits`` (the log–log slopes) among others."""
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
            "reasons": list(self.reasons),
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "detection_limits": {part.name.lower(): lim.to_dict()
                                 for part, lim in self.detection_limits.items()},
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

    def plot(self, path: str | None = None, *, ax: Any = None, controls: bool = True) -> Any:
        """Log–log plot of |error| against the learning rate, one series per test function.

        Error bars are ±2 standard errors (hollow points: not resolved); each test function's
        fitted error series (its verdict's series from ``lr^p``) is the solid curve, the tested
        order the dashed line, and the negative controls — wrong SMEs on the same random numbers,
        which the check must fail — are drawn in grey. The legend sits to the right of the data.
        Needs matplotlib (``pip install 'smetool[plots]'``). Returns the figure.
        """
        names = list(self.verdicts) or list(self.fits)
        if not names:
            raise ValueError("no test function has errors to plot (see `unfitted`).")
        series = {n: v.reduced for n, v in self.verdicts.items() if v.reduced is not None}
        return plot_weak_errors(
            self.weak_errors, names=names, fits=self.fits, reference_order=self.order,
            series=series, controls={k: c.weak_errors for k, c in self.controls.items()}
            if controls else None,
            ax=ax, path=path, xlabel="learning rate ε", ylabel="|E g(discrete) − E g(SME)|",
            title=f"{self.algorithm}: weak error of the order-{self.order} SME")

    def table(self) -> str:
        """A plain-text report: the errors (|error|/SE, variance reduction, the solver's share),
        the series verdicts with their coefficients, the detection limits, the log–log slopes,
        and the negative controls."""
        extrapolated = self.settings.get("extrapolated")
        lines = [
            f"weak error of the order-{self.order} SME of {self.algorithm!r}: "
            f"E g(discrete) - E g(SME) at T = {self.horizon:g}, {self.n_paths} paths per side, "
            f"SME step lr/{self.steps_per_lr} ({self.method}"
            f"{', extrapolated from h, 2h, 4h' if extrapolated else ''}), control variates: "
            f"{self.settings.get('variance_reduction', 'none')}",
            f"{'test function':>14} {'lr':>9} {'error':>11} {'std err':>9} {'|err|/SE':>8} "
            f"{'var.red.':>8} {'solver err' + (' (removed)' if extrapolated else ''):>11}",
        ]
        for r in self.rows:
            if r.time != self.horizon:
                continue
            snr = abs(r.error) / r.stderr if r.stderr > 0 else math.inf
            lines.append(
                f"{r.test_function:>14} {r.lr:>9.4g} {r.error:>+11.3e} {r.stderr:>9.2e} "
                f"{snr:>8.1f} {r.variance_reduction:>8.3g} {r.solver_error:>+11.1e}"
            )
        p = self.order
        alpha = self.settings.get("alpha", math.nan)
        lines += ["", f"series test: e(lr) = c_{p - 1} lr^{p - 1} + c_{p} lr^{p} + … fitted with "
                      f"weights 1/SE²; a test function fails order {p} when c_{p - 1} ≠ 0 at "
                      f"level {alpha:.2g} (false failure of the check ≤ "
                      f"{self.settings.get('false_failure', math.nan):g})",
                  f"{'test function':>14} {'terms':>5} {'c_' + str(p - 1) + ' (t)':>22} "
                  f"{'c_' + str(p) + ' (t)':>22} {'χ² p':>6} {'slope [95% CI]':>24}  verdict"]
        for name, verdict in self.verdicts.items():
            lines.append(f"{name:>14} {series_verdict_cells(verdict)} {slope_cell(self.fits.get(name))}"
                         f"  {verdict}")
        if self.detection_limits:
            lines += ["", "detection limits (the smallest relative error this run fails):"]
            for lim in self.detection_limits.values():
                best = lim.best
                shown = ", ".join(f"{k} {_percent(v)}" for k, v in lim.per_test.items())
                lead = (f"an SME whose {lim.part.value} is off by ≥ {_percent(best)}"
                        if math.isfinite(best) else f"no test function sees the {lim.part.value}")
                lines.append(f"  {lead} (from {lim.control!r}; per test function: {shown})")
        elif self.order == 1:
            lines += ["", "detection limits: at order 1 the noise covariance Σ enters the error "
                          "only at O(lr²), so no error in Σ can fail an order-1 check."]
        if self.controls:
            lines.append("")
            lines.append(f"negative controls (wrong SMEs on the same random numbers; each must be "
                         f"failed as an order-{self.order} SME):")
            for control in self.controls.values():
                kind = "hard, from the detection limit" if control.hard else "declared"
                lines.append(f"  {control.name} ({kind}): {control.why} — "
                             f"{'FAILED (rejected)' if control.rejected else 'NOT REJECTED'}")
                for name, verdict in control.verdicts.items():
                    lines.append(f"    {name:>14} {series_verdict_cells(verdict)} "
                                 f"{slope_cell(control.fits.get(name))}  {verdict.verdict.value}")
        elif self.control_note:
            lines += ["", self.control_note]
        reasons = "; ".join(self.reasons)
        lines.append(f"verdict: {self.verdict.value}{f' ({reasons})' if reasons else ''} "
                     f"({self.seconds:.1f} s)")
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


def _percent(value: float) -> str:
    return f"{100 * value:.2g} %" if math.isfinite(value) else "∞"


