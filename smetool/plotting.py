"""Log–log plots of weak errors with error bars, fitted slopes and reference slopes.

matplotlib is imported only when a plot is made (``pip install 'smetool[plots]'``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .montecarlo import WeakErrorTable
from .stats import OrderFit, WeakOrderWarning, fit_order

__all__ = ["plot_weak_errors"]


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
) -> Any:
    """Plot ``|error|`` against the step on log–log axes.

    Error bars are ``± z·SE`` (clipped at the bottom of the axis where they reach zero); points with
    ``|e| < min_snr·SE`` (for an :class:`~smetool.OrderFit`, its flagged points; for a table,
    ``|e| < 3 SE``) are drawn hollow. A fitted line is drawn for each series when ``fits`` and a
    dashed reference slope through the point of the largest step when ``reference_order`` is given.

    Parameters
    ----------
    data : WeakErrorTable or OrderFit
    names : sequence of str, optional
        Test functions to draw from a table (default all).
    time_index : int
        Save time drawn from a table (default the last).
    fits : bool or dict of str to OrderFit
        Fit and draw the order of each series (:func:`~smetool.fit_order`; series it cannot
        fit are drawn without a line), or draw the fits given (by test function).
    reference_order : float, optional
        Draw a reference line ``∝ h^reference_order``.
    z : float
        Error-bar half-width in standard errors.
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    path : path, optional
        Save the figure there.
    title : str, optional
    xlabel, ylabel : str
        Axis labels.

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
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
    else:
        fig = ax.figure
    series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, OrderFit | None]] = []
    if isinstance(data, OrderFit):
        series.append(("error", np.array(data.steps), np.array(data.errors), np.array(data.stderrs),
                       np.array(data.used), data))
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
            used = np.array(fit.used) if fit is not None else np.abs(e) >= 3 * se
            series.append((name, h, e, se, used, fit))

    for name, h, e, se, used, fit in series:
        y = np.abs(e)
        lower = np.minimum(z * se, y * (1 - 1e-9))  # keep bars on a log axis
        label = name
        if fit is not None:
            label = f"{name}: slope {fit.slope:.2f} [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}]"
        bars = ax.errorbar(h[used], y[used], yerr=[lower[used], z * se[used]], fmt="o",
                           capsize=3, label=label)
        color = bars[0].get_color()
        if (~used).any():
            ax.errorbar(h[~used], y[~used], yerr=[lower[~used], z * se[~used]], fmt="o",
                        mfc="none", color=color, capsize=3)
        if fit is not None:
            hh = np.geomspace(h.min(), h.max(), 50)
            ax.plot(hh, fit.constant * hh**fit.slope, "-", color=color, lw=1)
    if reference_order is not None:
        h_all = np.concatenate([s[1] for s in series])
        y_all = np.concatenate([np.abs(s[2]) for s in series])
        i = int(np.argmax(h_all))
        hh = np.geomspace(h_all.min(), h_all.max(), 50)
        ax.plot(hh, y_all[i] * (hh / h_all[i]) ** reference_order, "k--", lw=1,
                label=f"slope {reference_order:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    if path is not None:
        fig.savefig(path, bbox_inches="tight", dpi=120)
    return fig
