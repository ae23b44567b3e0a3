"""Fixed-width text cells of a judged series, shared by the reports of :func:`smetool.verify` and
:func:`smetool.convergence` (one layout, so the two tables read alike)."""

from __future__ import annotations

import math

from ..stats import OrderFit, SeriesVerdict

__all__ = ["series_verdict_cells", "slope_cell"]


def _coefficient(value: float, stderr: float) -> str:
    if not math.isfinite(value):
        return f"{'—':>22}"
    t = value / stderr if stderr > 0 else math.inf
    return f"{value:>+10.3e} ({t:>+8.1f})"


def series_verdict_cells(verdict: SeriesVerdict) -> str:
    """``terms, c_lower (t), c_p (t), χ² p`` of a series verdict, as fixed-width text cells."""
    terms = "—" if verdict.terms is None else str(verdict.terms)
    p_value = math.nan if verdict.extended is None else verdict.extended.p_value
    return (f"{terms:>5} {_coefficient(verdict.lower, verdict.lower_stderr):>22} "
            f"{_coefficient(verdict.leading, verdict.leading_stderr):>22} {p_value:>6.2f}")


def slope_cell(fit: OrderFit | None) -> str:
    """``slope [95% CI]`` of a log–log fit (a picture, not the judge), 24 characters wide."""
    if fit is None:
        return f"{'no slope':>24}"
    return f"{fit.slope:>6.3f} [{fit.ci[0]:>6.3f}, {fit.ci[1]:>6.3f}]"
