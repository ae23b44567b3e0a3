"""The convergence pictures: negative controls in grey, tick labels that never run into each
other, the legend off the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from smetool import verify  # noqa: E402
from smetool.algorithms.registry import get_plugin  # noqa: E402
from smetool.plotting import CONTROL_COLOR, draw_errors, finish_axes, tidy_log_axis  # noqa: E402


def _labels_apart(fig, axis) -> bool:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels(which="both")
             if t.get_visible() and t.get_text()]
    return all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("decades", [0.2, 0.7, 1.2, 2.0, 3.5, 7.0])
def test_tick_labels_are_readable_for_any_range(decades):
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.geomspace(1e-3, 1e-3 * 10**decades, 6)
    ax.plot(x, x**2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    tidy_log_axis(ax.xaxis)
    tidy_log_axis(ax.yaxis)
    fig.canvas.draw()
    labelled = [t for t in ax.xaxis.get_ticklabels() if t.get_text()
                and x.min() <= t.get_position()[0] <= x.max()]
    assert len(labelled) >= 1
    assert _labels_apart(fig, ax.xaxis) and _labels_apart(fig, ax.yaxis)
    plt.close(fig)


def test_steps_are_the_x_ticks_and_the_legend_sits_outside():
    fig, ax = plt.subplots(figsize=(5, 3.5))
    steps = [0.05, 0.04, 0.03, 0.025, 0.02, 0.0125, 0.01]
    draw_errors(ax, steps, [0.1 * h for h in steps], [1e-4] * 7, label="g")
    finish_axes(ax, steps, xlabel="lr", ylabel="|e|")
    assert sorted(ax.get_xticks()) == pytest.approx(sorted(steps))
    assert _labels_apart(fig, ax.xaxis)
    renderer = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    plt.close(fig)


def test_verify_plot_draws_the_negative_controls_in_grey(tmp_path):
    spec = get_plugin("sgd")
    algorithm = spec.build(dtype=torch.float64, device="cpu",
                           **{o.name: o.default for o in spec.options})
    result = verify(algorithm, [0.125, 0.0625, 0.03125, 0.015625], 300, horizon=1.0,
                    steps_per_lr=4, seed=0, progress=False)
    assert result.controls
    fig = result.plot(str(tmp_path / "v.png"))
    ax = fig.axes[0]
    grey = [line for line in ax.get_lines()
            if matplotlib.colors.to_hex(line.get_color()) == matplotlib.colors.to_hex(CONTROL_COLOR)]
    n_controls = sum(len(c.weak_errors.names) for c in result.controls.values())
    assert len(grey) >= n_controls  # one grey line per control and test function
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "negative controls" in labels and any("claimed" in t for t in labels)
    assert (tmp_path / "v.png").stat().st_size > 10_000
    without = result.plot(controls=False)
    assert not [line for line in without.axes[0].get_lines()
                if matplotlib.colors.to_hex(line.get_color())
                == matplotlib.colors.to_hex(CONTROL_COLOR)]
    plt.close("all")
