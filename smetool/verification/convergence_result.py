"""The outcome of :func:`smetool.convergence`: errors per step, the series verdicts, the report,
the picture and the JSON record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..jsonutil import json_safe, strict_json
from ..montecarlo import WeakErrorTable
from ..plotting import draw_claimed_order, draw_errors, finish_axes, pyplot
from ..stats import OrderFit, SeriesVerdict, Verdict
from .table_cells import series_verdict_cells, slope_cell

__all__ = ["ConvergenceResult"]


@dataclass(frozen=True)
class ConvergenceResult:
    """The outcome of :func:`smetool.convergence`.

    Attributes
    ----------
    problem : str
        The problem's name (or the SDE's repr).
    method : str
        The scheme tested.
    kind : {"weak", "strong"}
    order : float
        The claimed order ``p`` (the method's declared order for the SDE's noise kind, or the
        one given).
    spacing : float
        Of the powers of the error series (1 for weak errors, ½ for strong ones).
    steps : tuple of float, (L,)
    names : tuple of str, (K,)
        Test functions (for strong errors the one quantity ``E|Y_T − X_T|``).
    errors, stderrs : tuple of tuple of float, (K, L)
        Signed errors ``E g(Y_h) − E g(reference)`` (strong: ``E‖Y_T − X_T‖``) at the end of the
        span, and their standard errors.
    variance_reduction : tuple of tuple of float, (K, L)
        The factor by which the reference's coupling (the exact solution on the same Brownian
        path, or the reference solve on it) cut the variance of each error (1 without one).
    verdicts : dict of str to SeriesVerdict
        Per test function, the series test (:func:`~smetool.judge_series`) at level
        ``settings["alpha"]``.
    fits : dict of str to OrderFit or None
        The log–log slopes (a picture; ``None`` where fewer than two errors are resolved).
    reference : str
        What the errors are measured against, in words.
    n_paths : int
        Paths per step.
    seconds : float
        Wall-clock time of the run.
    settings : dict
        Everything else needed to repeat it (seed, span, reference step and method, levels,
        the false-failure probability and the level α per test function).
    weak_errors : WeakErrorTable
        The table the errors were read from (its test functions are the run's internal ones).
    """

    problem: str
    method: str
    kind: str
    order: float
    spacing: float
    steps: tuple[float, ...]
    names: tuple[str, ...]
    errors: tuple[tuple[float, ...], ...]
    stderrs: tuple[tuple[float, ...], ...]
    variance_reduction: tuple[tuple[float, ...], ...]
    verdicts: dict[str, SeriesVerdict]
    fits: dict[str, OrderFit | None]
    reference: str
    n_paths: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    weak_errors: WeakErrorTable | None = field(default=None, repr=False)

    @property
    def verdict(self) -> Verdict:
        """**Fail** when a test function fails; **pass** when none fails, every one's errors are
        an acceptable series and at least one resolves its leading coefficient ``c_p``;
        **inconclusive** otherwise (:attr:`reasons`)."""
        if any(v.failed for v in self.verdicts.values()):
            return Verdict.FAIL
        return Verdict.INCONCLUSIVE if self.reasons else Verdict.PASS

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the verdict is not a pass (empty for a pass)."""
        out = [f"{name}: {v}" for name, v in self.verdicts.items()
               if v.failed or not v.acceptable]
        if not any(v.passed for v in self.verdicts.values()):
            out.append("no test function resolves the leading error coefficient")
        return tuple(out)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, errors, stderrs)`` of one test function."""
        k = self.names.index(name)
        return (np.array(self.steps), np.array(self.errors[k]), np.array(self.stderrs[k]))

    def table(self) -> str:
        """A plain-text report: the errors with their standard errors and variance reduction,
        the series verdicts with their coefficients, the log–log slopes, the verdict."""
        span = self.settings.get("t_span", (math.nan, math.nan))
        what = ("E‖Y_T − X_T‖" if self.kind == "strong" else "E g(Y_h) − E g(X_T)")
        lines = [f"{self.kind} convergence of {self.method!r} on {self.problem}: {what} at "
                 f"T = {span[1]:g}, {self.n_paths} paths per step; reference: {self.reference}",
                 f"{'test function':>14} {'h':>10} {'error':>11} {'std err':>9} {'|err|/SE':>8} "
                 f"{'var.red.':>8}"]
        for k, name in enumerate(self.names):
            for j, h in enumerate(self.steps):
                e, se = self.errors[k][j], self.stderrs[k][j]
                snr = abs(e) / se if se > 0 else math.inf
                lines.append(f"{name:>14} {h:>10.4g} {e:>+11.3e} {se:>9.2e} {snr:>8.1f} "
                             f"{self.variance_reduction[k][j]:>8.3g}")
        p, s = self.order, self.spacing
        alpha = self.settings.get("alpha", math.nan)
        lo = f"c[h^{p - s:g}]"
        lines += ["", f"series test: e(h) = {lo} h^{p - s:g} + c[h^{p:g}] h^{p:g} + … fitted with "
                      f"weights 1/SE²; a test function fails order {p:g} when {lo} ≠ 0 at level "
                      f"{alpha:.2g} (false failure of the check ≤ "
                      f"{self.settings.get('false_failure', math.nan):g})",
                  f"{'test function':>14} {'terms':>5} {lo + ' (t)':>22} "
                  f"{f'c[h^{p:g}] (t)':>22} {'χ² p':>6} {'slope [95% CI]':>24}  verdict"]
        for name, verdict in self.verdicts.items():
            lines.append(f"{name:>14} {series_verdict_cells(verdict)} "
                         f"{slope_cell(self.fits.get(name))}  {verdict}")
        lines += ["", f"verdict: {self.verdict.value}"
                  + (f" ({'; '.join(self.reasons)})" if self.reasons else "")]
        return "\n".join(lines)

    def plot(self, path: str | None = None, *, ax: Any = None) -> Any:
        """Log–log plot: ``|error| ± 2 SE`` per test function against the step, each with its
        fitted error series (solid) and the claimed order (dashed). Needs matplotlib. Returns the
        figure (saved to ``path`` when given)."""
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
        else:
            fig = ax.figure
        for name in self.names:
            h, e, se = self.series(name)
            verdict = self.verdicts[name]
            draw_errors(ax, h, e, se, label=f"{name}: {verdict.verdict.value}",
                        series=verdict.reduced, fit=self.fits.get(name))
        draw_claimed_order(ax, np.tile(self.steps, len(self.names)), np.ravel(self.errors),
                           self.order, label=f"claimed order {self.order:g}")
        finish_axes(ax, self.steps, xlabel="step h",
                    ylabel="E‖Y(T) − X(T)‖" if self.kind == "strong" else "|E g(Y(T)) − E g(X(T))|",
                    title=f"{self.method} on {self.problem}: {self.kind} order {self.order:g}")
        if path is not None:
            fig.savefig(path, bbox_inches="tight", dpi=120)
        return fig

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and infinities as ``None``)."""
        return json_safe({
            "problem": self.problem, "method": self.method, "kind": self.kind,
            "order": self.order, "spacing": self.spacing, "steps": list(self.steps),
            "reference": self.reference, "n_paths": self.n_paths, "seconds": self.seconds,
            "verdict": self.verdict.value, "reasons": list(self.reasons),
            "settings": self.settings,
            "tests": [{
                "test_function": name, "errors": list(self.errors[k]),
                "stderrs": list(self.stderrs[k]),
                "variance_reduction": list(self.variance_reduction[k]),
                "verdict": self.verdicts[name].to_dict(),
                "slope": None if self.fits.get(name) is None else self.fits[name].slope,  # type: ignore[union-attr]
                "ci": None if self.fits.get(name) is None else list(self.fits[name].ci),  # type: ignore[union-attr]
            } for k, name in enumerate(self.names)],
        })

    def to_json(self, path: str | None = None) -> str:
        """Strict JSON of :meth:`to_dict` (written to ``path`` when given); returns the text."""
        return strict_json(self.to_dict(), path)
