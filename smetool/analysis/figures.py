"""Shared drawing helpers of the analyses' figures (needs matplotlib).

Figures are drawn with matplotlib's object API (``Figure`` + Agg canvas), so nothing touches
pyplot's global state or the user's backend. Power laws are drawn as ``log₁₀`` values on linear
axes: log-scaled axes over the many decades a flatness can span make matplotlib lay out thousands
of ticks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["figure", "color", "per_algorithm", "loss_figure", "log_scatter"]

_PALETTE = ("tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown",
            "tab:pink", "tab:olive", "tab:cyan")


def figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.4, 3.4)):
    """A ``Figure`` with an Agg canvas and its ``(nrows, ncols)`` axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without the plots extra
        raise ImportError("writing the analysis figures needs matplotlib; install smetool[plots] "
                          "or pass out_dir=None.") from exc
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def color(labels: list[str], label: str) -> str:
    """A color per algorithm, by its position among ``labels`` (the reference first: blue)."""
    return _PALETTE[labels.index(label) % len(_PALETTE)]


def per_algorithm(ax: Any, labels: list[str], values: dict[str, Any], ylabel: str,
                  title: str) -> None:
    """Every seed's value (dots) and the mean with its 98 % t-interval (bar), one column per
    algorithm; ``values[label]`` is ``(P,)``."""

    for i, label in enumerate(labels):
        if label not in values:
            continue
        x = np.asarray(values[label], float)
        x = x[np.isfinite(x)]
        if not x.size:
            continue
        c = color(labels, label)
        ax.plot(np.full(x.size, i) + np.linspace(-0.12, 0.12, x.size), x, "o", ms=3, alpha=0.5,
                color=c)
        if x.size > 1:
            half = stats.t.ppf(0.99, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
            ax.errorbar([i + 0.25], [x.mean()], yerr=[half], fmt="s", ms=5, capsize=3, color=c)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.3)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)


def log_scatter(ax: Any, x: Any, y: Any, fit: Any, label: str, color_: str) -> None:
    """``log₁₀ y`` against ``log₁₀ x`` (positive finite pairs), with a fitted power law."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log10(x[ok]), np.log10(y[ok])
    ax.plot(lx, ly, "o", ms=3, alpha=0.5, color=color_, label=label)
    if fit is not None and ok.any():
        xs = np.linspace(lx.min(), lx.max(), 2)
        ax.plot(xs, (fit.intercept + fit.slope * xs * np.log(10)) / np.log(10), "-", lw=1.1,
                color=color_)


def loss_figure(trajectories: dict[str, Any], title: str, path: Path) -> None:
    """The training loss along training (median over seeds, band: range), one line per
    algorithm, with the target where there is one."""
    fig, axes = figure(size=(5.6, 3.8))
    ax = axes[0, 0]
    labels = list(trajectories)
    target = None
    for label, traj in trajectories.items():
        steps = traj.steps.cpu().numpy()
        loss = np.log10(np.clip(traj.loss.cpu().numpy(), 1e-300, None))
        c = color(labels, label)
        ax.plot(steps, np.median(loss, axis=1), color=c, label=f"{label} (lr {traj.lr:g})")
        ax.fill_between(steps, loss.min(1), loss.max(1), color=c, alpha=0.15)
        target = traj.target if traj.target is not None else target
    if target is not None:
        ax.axhline(np.log10(target), color="k", lw=0.8, ls=":", label="target")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 training loss")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100)
