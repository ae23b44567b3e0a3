"""PNG figures of a :class:`~smetool.analysis.network.NetworkReport` (needs matplotlib).

Drawn with matplotlib's object API (``Figure`` + Agg canvas), as :mod:`.report_figures`. Power
laws are drawn as ``log₁₀`` values on linear axes: log-scaled axes over the many decades a
flatness can span make matplotlib lay out thousands of ticks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_network_figures"]


def _figure(ncols: int, nrows: int = 1, size=(4.2, 3.4)):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without the plots extra
        raise ImportError("writing the report's figures needs matplotlib; install smetool[plots] "
                          "or pass out_dir=None.") from exc
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _scatter(ax, x, y, fit, verdict, xlabel, title):
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log10(x[ok]), np.log10(y[ok])
    ax.plot(lx, ly, "o", ms=3, alpha=0.6, color="tab:red")
    if fit is not None and ok.any():
        xs = np.linspace(lx.min(), lx.max(), 2)
        ax.plot(xs, (fit.intercept + fit.slope * xs * np.log(10)) / np.log(10), "k-", lw=1.1,
                label=f"pooled slope {fit.slope:+.2f}")
        ax.legend(fontsize=7)
    ax.set_xlabel(f"log10 {xlabel}", fontsize=8)
    ax.set_ylabel("log10 variance along PC", fontsize=8)
    ax.set_title(f"{title}\nper-seed slopes: {verdict}", fontsize=8)


def write_network_figures(report, out_dir: Path) -> list[Path]:
    """Write ``variance_flatness.png``, ``loss.png`` and ``spectrum.png``; return their paths."""
    out_dir = Path(out_dir)
    files: list[Path] = []
    kinds = list(report.variance_flatness)
    fig, axes = _figure(len(kinds), 2)
    for col, kind in enumerate(kinds):
        vf = report.variance_flatness[kind]
        var = vf.components.variances.cpu().numpy()
        for row, (which, x, fit, label) in enumerate((
                ("interval", vf.interval, vf.pooled_interval, f"interval flatness ({vf.level:g}·L)"),
                ("hessian", vf.hessian, vf.pooled_hessian, "Hessian flatness uᵀHu"))):
            verdict = report.findings[f"variance_{which}_{kind}"].verdict
            _scatter(axes[row, col], x.cpu().numpy(), var, fit, verdict, label, kind)
    fig.suptitle(report.config["network"], fontsize=10)
    files.append(out_dir / "variance_flatness.png")
    fig.savefig(files[-1], dpi=100)

    fig, axes = _figure(1)
    ax = axes[0, 0]
    for method, color in (("dropout", "tab:red"), ("gd", "tab:blue")):
        rec = report.loss[method]
        steps, loss = rec["steps"].cpu().numpy(), rec["loss"].cpu().numpy()
        loss = np.log10(loss)
        ax.plot(steps, np.median(loss, axis=1), color=color, label=method)
        ax.fill_between(steps, loss.min(1), loss.max(1), color=color, alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 training loss R_S")
    ax.legend(fontsize=8)
    ax.set_title(f"{report.config['network']}: loss (median, band: seeds' range)", fontsize=9)
    files.append(out_dir / "loss.png")
    fig.savefig(files[-1], dpi=100)

    fig, axes = _figure(1)
    ax = axes[0, 0]
    for method, color, shift in (("dropout", "tab:red", -0.15), ("gd", "tab:blue", 0.15)):
        top = report.hessian[method].top.cpu().numpy()
        k = np.arange(1, top.shape[1] + 1)
        for row in top:
            ax.plot(k + shift, np.log10(np.where(row > 0, row, np.nan)), "o", ms=3, color=color,
                    alpha=0.6)
        ax.plot([], [], "o", color=color, label=method)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("log10 Hessian eigenvalue of R_S")
    ax.legend(fontsize=8)
    ax.set_title("top Hessian eigenvalues at the end points (every seed)", fontsize=9)
    files.append(out_dir / "spectrum.png")
    fig.savefig(files[-1], dpi=100)
    return files
