"""Log–log plots of errors against the step: error bars, the fitted error series, the claimed
order, and negative controls in grey.

Every convergence picture of smetool — :meth:`VerifyResult.plot <smetool.VerifyResult.plot>`,
:meth:`ConvergenceResult.plot <smetool.ConvergenceResult.plot>`, the validation page's grid — is
drawn by :func:`draw_errors` into an axes finished by :func:`finish_axes`: ticks at the measured
steps (readable whatever the range), the legend outside the data. matplotlib is imported only when
a plot is made (``pip install 'smetool[plots]'``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .montecarlo import WeakErrorTable
from .stats import OrderFit, SeriesFit, WeakOrderWarning, fit_order

__all__ = ["plot_weak_errors", "draw_errors", "draw_claimed_order", "finish_axes", "tidy_log_axis", "pyplot",
           "CONTROL_COLOR"]

CONTROL_COLOR = "0.6"
"""The grey of negative controls."""


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # a missing optional dependency: say how to get it
        raise ImportError(
            "plot_weak_errors needs matplotlib; install it with `pip install 'smetool[plots]'` "
            "(or `pip install matplotlib`)."
        ) from exc
    return plt


def _series_curve(series: SeriesFit | Mapping[str, Any], h: np.ndarray) -> np.ndarray:
    powers = series.powers if isinstance(series, SeriesFit) else series["powers"]
    coefs = series.coefficients if isinstance(series, SeriesFit) else series["coefficients"]
    return np.abs(sum(c * h ** float(q) for c, q in zip(coefs, powers)))


def draw_errors(ax: Any, steps: Any, errors: Any, stderrs: Any, *, label: str | None = None,
                color: Any = None, z: float = 2.0, series: Any = None, fit: OrderFit | None = None,
                control: bool = False) -> Any:
    """Draw ``|error| ± z·SE`` against the step on ``ax`` (log–log), with the fitted series.

    Points whose interval reaches zero (``|e| < z·SE``: not resolved) are hollow, their bars
    drawn down to a tenth of the point. ``series`` (a :class:`~smetool.SeriesFit` or its ``to_dict()``) is
    drawn as a solid curve ``|Σ_j c_j h^{q_j}|``; without it, ``fit`` (the log–log slope) as a
    line. A ``control`` is drawn in :data:`CONTROL_COLOR`, smaller, its points joined by a thin
    line. Returns the colour used.
    """
    h = np.asarray(steps, dtype=float)
    e = np.asarray(errors, dtype=float)
    se = np.asarray(stderrs, dtype=float)
    y = np.abs(e)
    ok = y > 0
    h, e, se, y = h[ok], e[ok], se[ok], y[ok]
    resolved = y >= z * se
    # a bar that reaches zero is drawn down to a tenth of the point (with a hollow marker): on a
    # log axis the true bar has no end, and drawing it to ~0 would stretch the axis by decades
    lower = np.where(resolved, z * se, 0.9 * y)
    if control:
        color = CONTROL_COLOR
        ax.plot(h, y, "-", color=color, lw=0.8, zorder=1)
    style = dict(capsize=2 if control else 3, ms=4 if control else 6, zorder=1 if control else 3)
    bars = ax.errorbar(h[resolved], y[resolved], yerr=[lower[resolved], z * se[resolved]],
                       fmt="s" if control else "o", color=color, label=label, **style)
    color = bars[0].get_color()
    if (~resolved).any():
        ax.errorbar(h[~resolved], y[~resolved], yerr=[lower[~resolved], z * se[~resolved]],
                    fmt="s" if control else "o", mfc="none", color=color, **style)
    if control or len(h) < 2:
        return color
    hh = np.geomspace(h.min(), h.max(), 60)
    if series is not None:
        ax.plot(hh, _series_curve(series, hh), "-", color=color, lw=1.2, zorder=2)
    elif fit is not None:
        ax.plot(hh, fit.constant * hh**fit.slope, "-", color=color, lw=1, zorder=2)
    return color


def draw_claimed_order(ax: Any, steps: Any, errors: Any, order: float, *,
                       label: str | None = None) -> None:
    """A dashed black line ``∝ h^order`` through the geometric mean of the resolved errors (the
    claimed order, for the eye to compare slopes)."""
    h = np.asarray(steps, dtype=float)
    y = np.abs(np.asarray(errors, dtype=float))
    ok = y > 0
    if not ok.any():
        return
    h0 = float(np.exp(np.mean(np.log(h[ok]))))
    y0 = float(np.exp(np.mean(np.log(y[ok]))))
    hh = np.geomspace(h.min(), h.max(), 20)
    ax.plot(hh, y0 * (hh / h0) ** order, "k--", lw=1, zorder=2,
            label=label if label is not None else f"claimed order {order:g}")


def _tick_label(h: float) -> str:
    k = np.log2(h)
    if abs(k - round(k)) < 1e-9 and h < 1:
        return f"$2^{{{int(round(k))}}}$"
    return f"{h:g}"


def _number(value: float, _pos: Any = None) -> str:
    mantissa, exponent = f"{value:.0e}".split("e")
    e = int(exponent)
    if -3 <= e <= 3:
        return f"{value:g}"
    return f"$10^{{{e}}}$" if mantissa == "1" else f"${mantissa}\\times10^{{{e}}}$"


def tidy_log_axis(axis: Any, fontsize: str = "small") -> None:
    """Readable labels on a log axis whatever its range: the decades when it spans more than 1.5
    of them, else 1, 2 and 5 times the decades (every integer multiple below half a decade), in
    plain numbers between 10⁻³ and 10³; minor ticks unlabelled, so labels never run into each
    other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.autoscale_view()
    lo, hi = axis.get_view_interval()
    if not (lo > 0 and hi > lo):
        return
    decades = math.log10(hi / lo)
    subs = (1.0,) if decades > 1.5 else (1.0, 2.0, 5.0) if decades > 0.5 else \
        tuple(float(k) for k in range(1, 10))
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(_number))
    axis.set_minor_formatter(NullFormatter())
    axis.set_tick_params(labelsize=fontsize, which="both")


def finish_axes(ax: Any, steps: Any, *, xlabel: str, ylabel: str, title: str | None = None,
                legend: str = "right", fontsize: str = "small") -> None:
    """Log–log axes with a tick at every measured step (labelled ``2^{-k}`` for powers of two,
    else ``%g``, so a range of less than a decade is labelled too) and the legend outside the
    data: ``"right"`` of the axes, ``"below"`` them, or ``"none"``."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    h = sorted(set(float(s) for s in np.asarray(steps, dtype=float).ravel()))
    ax.set_xticks(h)
    ax.set_xticklabels([_tick_label(s) for s in h], fontsize=fontsize,
                       rotation=45 if len(h) > 5 else 0)
    ax.xaxis.set_minor_formatter(NullFormatter())
    tidy_log_axis(ax.yaxis, fontsize)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    if legend == "right":
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, frameon=False)
    elif legend == "below":
        ax.legend(fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                  ncol=2, frameon=False)


def plot_weak_errors(
    data: WeakErrorTable | OrderFit,
    *,
    names: Sequence[str] | None = None,
    time_index: int = -1,
    fits: bool | Mapping[str, OrderFit] = True,
    reference_order: float | None = None,
    z: float = 2.0,
    ax: Any = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    xlabel: str = "step h",
    ylabel: str = "|weak error|",
    series: Mapping[str, SeriesFit] | None = None,
    controls: Mapping[str, WeakErrorTable] | None = None,
) -> Any:
    """Plot ``|error|`` against the step on log–log axes (:func:`draw_errors` per series).

    Error bars are ``± z·SE``; points whose interval reaches zero are hollow (their bars drawn down
    to a tenth of the point). Each series carries its fitted error series when
    ``series`` has it, else its log–log slope line when ``fits``; a dashed line of slope
    ``reference_order`` (the claimed order) goes through the middle of the data, and the
    negative ``controls`` (wrong references on the same paths) are drawn in grey.

    Parameters
    ----------
    data : WeakErrorTable or OrderFit
    names : sequence of str, optional
        Test functions to draw from a table (default all).
    time_index : int
        Save time drawn from a table (default the last).
    fits : bool or dict of str to OrderFit
        Fit and draw the log–log slope of each series (:func:`~smetool.fit_order`; series it
        cannot fit are drawn without a line), or draw the fits given (by test function).
    reference_order : float, optional
        Draw the claimed order as a dashed line ``∝ h^reference_order``.
    z : float
        Error-bar half-width in standard errors.
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    path : path, optional
        Save the figure there.
    title : str, optional
    xlabel, ylabel : str
        Axis labels.
    series : dict of str to SeriesFit, optional
        The fitted error series per test function (e.g. each verdict's ``reduced`` fit).
    controls : dict of str to WeakErrorTable, optional
        Negative controls, drawn in grey for the same test functions.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        matplotlib is not installed.
    TypeError
        ``data`` is neither a table nor a fit.
    KeyError
        An unknown name.
    """
    if not isinstance(data, (WeakErrorTable, OrderFit)):
        raise TypeError(f"`data` must be a WeakErrorTable or an OrderFit; got {type(data).__name__}.")
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, OrderFit | None]] = []
    if isinstance(data, OrderFit):
        rows.append(("error", np.array(data.steps), np.array(data.errors), np.array(data.stderrs),
                     data))
    else:
        for name in (data.names if names is None else names):
            h, e, se = data.series(name, time_index)
            fit = fits.get(name) if isinstance(fits, Mapping) else None
            if fits is True:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", WeakOrderWarning)
                    try:
                        fit = fit_order(h, e, se)
                    except ValueError:
                        fit = None
            rows.append((name, h, e, se, fit))
    labelled = False
    for control in (controls or {}).values():
        for name, *_ in rows:
            if name not in control.names:
                continue
            h, e, se = control.series(name, time_index)
            draw_errors(ax, h, e, se, z=z, control=True,
                        label=None if labelled else "negative controls")
            labelled = True
    for name, h, e, se, fit in rows:
        label = name
        if fit is not None:
            label = f"{name}: slope {fit.slope:.2f} [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}]"
        draw_errors(ax, h, e, se, label=label, z=z, fit=fit,
                    series=(series or {}).get(name))
    if reference_order is not None:
        draw_claimed_order(ax, np.concatenate([r[1] for r in rows]),
                           np.concatenate([r[2] for r in rows]), reference_order,
                           label=f"slope {reference_order:g} (claimed)")
    finish_axes(ax, np.concatenate([r[1] for r in rows]), xlabel=xlabel, ylabel=ylabel,
                title=title)
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=120)
    return fig
