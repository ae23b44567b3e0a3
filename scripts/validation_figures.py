"""The validation page's convergence figures, drawn from its record alone.

    python scripts/validation_figures.py [RECORD.json] [--out FOLDER]

One grid per section (``solvers.png``, ``problems.png``, ``plugins.png`` in
``FOLDER/figures/validation/``; default: beside ``docs/validation.json``): a log–log panel per
Monte-Carlo row — ``|error| ± 2 SE`` against the step or learning rate (hollow where the interval
reaches zero), the error series the verdict fitted (solid; refitted from the recorded numbers by
:func:`smetool.judge_series`, the judge of the page, so it is the series the verdict rests on), the
claimed order (dashed), and for plug-ins every negative control in grey in the same panel. The
title says the verdict. ``scripts/validation.py`` calls :func:`write_figures` after it writes the
page, and ``--render-only`` redraws them.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = Path("figures") / "validation"
COLUMNS = 3
ALPHA = 0.01  # the level of the page's solver rows (validation.MC_ALPHA)


def _series(steps, errors, stderrs, order, kind, alpha):
    """The reduced series the verdict fitted (None where the judge has none)."""
    from smetool import judge_series

    try:
        verdict = judge_series(steps, errors, [max(s, 1e-300) for s in stderrs], order,
                               alpha=alpha, spacing=0.5 if kind == "strong" else 1.0)
    except ValueError:
        return None
    return verdict.reduced


def _grid(n: int, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(n / COLUMNS))
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(4.0 * COLUMNS, 3.6 * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize="large")
    return fig, list(axes.flat[:n])


def _title(text: str, verdict: str) -> str:
    return "\n".join(textwrap.wrap(text, 46)[:2]) + f"\n— {verdict.upper() if verdict == 'fail' else verdict}"


def _key(fig) -> None:
    """The symbols, once per figure."""
    from matplotlib.lines import Line2D

    from smetool.plotting import CONTROL_COLOR

    handles = [Line2D([], [], marker="o", ls="", color="C0", label="|error| ± 2 SE"),
               Line2D([], [], marker="o", ls="", mfc="none", color="C0",
                      label="not resolved (interval reaches 0)"),
               Line2D([], [], color="C0", label="fitted error series"),
               Line2D([], [], color="k", ls="--", label="claimed order"),
               Line2D([], [], marker="s", color=CONTROL_COLOR, label="negative control")]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize="small",
               frameon=False)


def mc_figure(cases: list[dict], title: str, path: Path) -> Path | None:
    """A panel per Monte-Carlo row (solvers or the problem library)."""
    from smetool.plotting import draw_claimed_order, draw_errors, finish_axes

    rows = [c for c in cases if "stderrs" in c and c.get("type", "mc") == "mc"]
    if not rows:
        return None
    fig, axes = _grid(len(rows), title)
    for ax, c in zip(axes, rows):
        series = _series(c["steps"], c["errors"], c["stderrs"], c["theory"], c["kind"], ALPHA)
        draw_errors(ax, c["steps"], c["errors"], c["stderrs"], series=series)
        draw_claimed_order(ax, c["steps"], c["errors"], c["theory"])
        finish_axes(ax, c["steps"], xlabel="step h",
                    ylabel="E|Y − X|" if c["kind"] == "strong" else "|weak error|",
                    title=_title(f"{c['solver']} ({c['kind']} {c['theory']:g}): {c['problem']}",
                                 c["verdict"]), legend="none", fontsize="small")
    _key(fig)
    fig.savefig(path, dpi=100)
    _close(fig)
    return path


def draw_plugin_panel(ax, case: dict, *, title: str | None = None,
                      legend: str = "below") -> None:
    """One ``smetool verify`` run of the record (a plug-in case): its test functions with their
    fitted series, its negative controls in grey, the claimed order."""
    from smetool.plotting import draw_claimed_order, draw_errors, finish_axes

    labelled = False
    for ctl in case.get("controls", []):
        for name, errors in ctl["errors"].items():
            draw_errors(ax, case["lrs"], errors, ctl["stderrs"][name], control=True,
                        label=None if labelled else "negative controls")
            labelled = True
    for f in case["tests"]:
        series = _series(f["steps"], f["errors"], f["stderrs"], case["order"], "weak",
                         case["alpha"])
        draw_errors(ax, f["steps"], f["errors"], f["stderrs"], series=series,
                    label=f"{f['test_function']}: {f['verdict']}")
    if case["tests"]:  # through the first test function's errors
        draw_claimed_order(ax, case["tests"][0]["steps"], case["tests"][0]["errors"],
                           case["order"], label=f"claimed order {case['order']}")
    finish_axes(ax, case["lrs"], xlabel="learning rate", ylabel="|weak error|",
                title=title if title is not None else
                _title(case["command"].removeprefix("smetool "), case["verdict"]),
                legend=legend, fontsize="small")


def plugin_figure(cases: list[dict], path: Path) -> Path | None:
    """A panel per ``smetool verify`` run: its test functions and its negative controls."""
    runs = [c for c in cases if "tests" in c]
    if not runs:
        return None
    fig, axes = _grid(len(runs), "Plug-ins: weak error of each SME against its algorithm")
    for ax, c in zip(axes, runs):
        draw_plugin_panel(ax, c)
    _key(fig)
    fig.savefig(path, dpi=100)
    _close(fig)
    return path


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def write_figures(record: dict, out: Path) -> list[Path]:
    """Draw every figure of the record into ``out/figures/validation``; returns the files."""
    folder = Path(out) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    by_kind = {s["kind"]: s for s in record["sections"]}
    made = []
    if "solvers" in by_kind:
        made.append(mc_figure(by_kind["solvers"]["cases"],
                              "Solvers: Monte-Carlo weak and strong orders",
                              folder / "solvers.png"))
    if "problems" in by_kind:
        made.append(mc_figure(by_kind["problems"]["cases"],
                              "Problem library: Monte-Carlo weak and strong orders",
                              folder / "problems.png"))
    if "plugins" in by_kind:
        made.append(plugin_figure(by_kind["plugins"]["cases"], folder / "plugins.png"))
    return [p for p in made if p is not None]


def figure_link(kind: str) -> str | None:
    """The page's Markdown for the figure of a section (None: the section has none)."""
    names = {"solvers": "solvers", "problems": "problems", "plugins": "plugins"}
    if kind not in names:
        return None
    return (f"![Convergence of every row of this section (log–log, ±2 SE, fitted series, claimed "
            f"order, negative controls in grey)]({(FOLDER / names[kind]).as_posix()}.png)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", nargs="?", default=str(ROOT / "docs" / "validation.json"))
    parser.add_argument("--out", default=None, help="folder (default: the record's)")
    args = parser.parse_args(argv)
    record = json.loads(Path(args.record).read_text())
    for path in write_figures(record, Path(args.out or Path(args.record).parent)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
