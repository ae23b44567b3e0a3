"""PNG figures of an :class:`~smetool.analysis.report.AnalysisReport` (needs matplotlib).

Figures are drawn with matplotlib's object API (``Figure`` + Agg canvas), so nothing touches
pyplot's global state or the user's backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["write_figures"]

_COLORS = {"dropout": "tab:red", "explicit": "tab:green", "gd": "tab:blue", "initial": "tab:gray"}
_LABELS = {"dropout": "dropout", "explicit": "GD on R_S + R_1", "gd": "GD", "initial": "initial"}


def _figure(ncols: int, nrows: int = 1, size=(4.6, 3.6)):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without the plots extra
        raise ImportError(
            "writing the report's figures needs matplotlib; install smetool[plots] or pass "
            "out_dir=None."
        ) from exc
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _loglog_panel(ax, x, y, fit, xlabel, title):
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    ax.loglog(x[ok], y[ok], "o", ms=3, alpha=0.6, color="tab:red")
    if fit is not None and ok.any():
        xs = np.geomspace(x[ok].min(), x[ok].max(), 50)
        ax.loglog(xs, np.exp(fit.intercept) * xs**fit.slope, "k-", lw=1.2,
                  label=f"slope {fit.slope:+.2f} [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("variance along PC")
    ax.set_title(title, fontsize=10)


def write_figures(report, out_dir: Path) -> list[Path]:
    """Write the report's PNG figures into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    files: list[Path] = []

    # variance vs flatness, log–log, with fitted slopes
    fig, axes = _figure(2, 2)
    for row, kind in enumerate(("gradient", "trajectory")):
        vf = report.variance_flatness[kind]
        var = vf.components.variances.cpu().numpy()
        _loglog_panel(axes[row, 0], vf.interval.cpu().numpy(), var, vf.pooled_interval,
                      f"interval flatness (level {vf.level:g}·L)",
                      f"{kind} data: variance vs interval")
        _loglog_panel(axes[row, 1], vf.hessian.cpu().numpy(), var, vf.pooled_hessian,
                      "Hessian flatness uᵀHu", f"{kind} data: variance vs Hessian")
    files.append(out_dir / "variance_flatness.png")
    fig.savefig(files[-1], dpi=110)

    # alignment along training
    fig, axes = _figure(1)
    ax = axes[0, 0]
    tr = report.alignment
    steps = tr.steps.cpu().numpy()
    for arr, color, label in ((tr.alpha, "tab:red", "α(H, Σ)"),
                              (tr.baseline_mean, "tab:gray", "baseline (random eigenbasis)")):
        a = arr.cpu().numpy()
        ax.plot(steps, a.mean(1), color=color, label=label)
        ax.fill_between(steps, a.min(1), a.max(1), color=color, alpha=0.2)
    b, s = tr.baseline_mean.cpu().numpy().mean(1), tr.baseline_sd.cpu().numpy().mean(1)
    ax.plot(steps, b + 3 * s, ":", color="tab:gray", label="baseline + 3 sd")
    ax.set_xlabel("dropout step")
    ax.set_ylabel("alignment")
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(b - 3 * s))))
    ax.legend(fontsize=8)
    ax.set_title("Hessian–noise alignment along training (band: seeds' range)", fontsize=10)
    files.append(out_dir / "alignment.png")
    fig.savefig(files[-1], dpi=110)

    # cosine similarity heat maps (seed 0), neurons sorted by orientation angle
    methods = ("initial", "dropout", "gd")
    fig, axes = _figure(3, size=(3.6, 3.3))
    for ax, method in zip(axes[0], methods):
        cos = report.cosine[method][0].cpu().numpy()
        ang = report.angle[method]
        if ang is not None:  # sort neurons by orientation (mod π: antipodal = same line)
            order = np.argsort(np.mod(ang[0].cpu().numpy(), math.pi))
            cos = cos[np.ix_(order, order)]
        im = ax.imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
        n = int(report.orientations[method].count[0])
        ax.set_title(f"{_LABELS[method]}: {n} orientations", fontsize=10)
        ax.set_xlabel("neuron")
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8, label="cosine similarity")
    files.append(out_dir / "cosine_similarity.png")
    fig.savefig(files[-1], dpi=110)

    # orientation–amplitude scatter (all seeds)
    fig, axes = _figure(1)
    ax = axes[0, 0]
    for method in methods:
        ang = report.angle[method]
        amp = report.amplitude[method].cpu().numpy().ravel()
        if ang is None:
            continue
        ax.scatter(ang.cpu().numpy().ravel(), amp, s=10, alpha=0.6, color=_COLORS[method],
                   label=_LABELS[method])
    ax.set_xlabel("orientation atan2(b, w) [rad]")
    ax.set_ylabel("amplitude |a|·‖w‖")
    ax.set_xlim(-math.pi, math.pi)
    if report.angle["dropout"] is None:
        ax.text(0.5, 0.5, "orientation angle needs a 1-D input with bias", ha="center",
                transform=ax.transAxes)
    ax.legend(fontsize=8)
    files.append(out_dir / "orientation_amplitude.png")
    fig.savefig(files[-1], dpi=110)

    # loss curves
    fig, axes = _figure(1)
    ax = axes[0, 0]
    for method, traj in report.trajectories.items():
        steps = traj.steps.cpu().numpy()
        loss = traj.loss.cpu().numpy()
        ax.semilogy(steps, np.median(loss, axis=1), color=_COLORS[method], label=_LABELS[method])
        ax.fill_between(steps, loss.min(1), loss.max(1), color=_COLORS[method], alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss R_S")
    ax.legend(fontsize=8)
    ax.set_title("loss (median, band: seeds' range)", fontsize=10)
    files.append(out_dir / "loss.png")
    fig.savefig(files[-1], dpi=110)
    return files
