"""The tutorials' figures, drawn from records — never by hand — and the tutorials' own record.

    python scripts/doc_figures.py        # redraw every figure from docs/validation.json and
                                         # docs/tutorials.json
    python scripts/doc_figures.py --run  # first rerun the plug-in tutorial's example (about a
                                         # minute) into docs/tutorials.json, then redraw

Each figure is a panel per ``smetool verify`` run (its test functions with their fitted series,
the negative controls in grey, the claimed order), the run taken from the record it belongs to:
the validation run of the built-in plug-ins (``docs/validation.json``, ``make validation``) or the
tutorial's own (``docs/tutorials.json``). The PNG's ``Description`` names the record and its
commit, and the suite checks it against the record (``tests/test_doc_numbers.py``), so a record
regenerated without redrawing its figures fails. ``scripts/readme_numbers.py`` (without
``--check``) redraws them along with the numbers.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = {"validation": ROOT / "docs" / "validation.json",
           "tutorials": ROOT / "docs" / "tutorials.json"}

FIGURES = {
    "verify-dropout": ("validation", (("dropout", 1), ("dropout", 2))),
    "tutorial-own-network": ("validation", (("dropout-net", 1),)),
    "tutorial-plugin": ("tutorials", (("noisy-gd", 1), ("noisy-gd", 2))),
}
"""Figure name (``docs/figures/NAME.png``) → (record, the runs it draws: plug-in and order)."""


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def records() -> dict[str, dict]:
    return {k: json.loads(p.read_text()) for k, p in RECORDS.items() if p.exists()}


def run_case(record: dict, plugin: str, order: int) -> dict:
    """The run of ``plugin`` at ``order`` in a record."""
    section = next(s for s in record["sections"] if s["kind"] == "plugins")
    for case in section["cases"]:
        if case["plugin"] == plugin and case["order"] == order:
            return case
    raise KeyError(f"the record has no run of {plugin} at order {order}")


def source(record_name: str, record: dict) -> str:
    """The citation of a record: file, commit, date."""
    m = record["machine"]
    return (f"docs/{RECORDS[record_name].name}, commit {m['commit']}"
            + (" with uncommitted changes" if m.get("uncommitted_changes") else "")
            + f", {m['date_utc']} UTC")


def draw(name: str, recs: dict[str, dict], out: Path = ROOT / "docs" / "figures") -> Path:
    """Draw ``docs/figures/NAME.png`` from its record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _load("validation_figures", ROOT / "scripts" / "validation_figures.py")
    record_name, runs = FIGURES[name]
    record = recs[record_name]
    fig, axes = plt.subplots(1, len(runs), figsize=(6.2 * len(runs), 4.8), squeeze=False,
                             layout="constrained")
    for ax, (plugin, order) in zip(axes[0], runs):
        case = run_case(record, plugin, order)
        panels.draw_plugin_panel(ax, case, title=f"{case['command']}: {case['verdict']}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100, metadata={"Description": source(record_name, record)})
    plt.close(fig)
    return path


def drawable(name: str, recs: dict[str, dict]) -> bool:
    """Whether the figure's record exists and holds its runs with their errors."""
    record_name, runs = FIGURES[name]
    if record_name not in recs:
        return False
    try:
        return all("tests" in run_case(recs[record_name], p, o) for p, o in runs)
    except (KeyError, StopIteration):
        return False


def draw_all(recs: dict[str, dict] | None = None,
             out: Path = ROOT / "docs" / "figures") -> list[Path]:
    """Redraw every figure whose record holds its runs (a note for the others)."""
    recs = records() if recs is None else recs
    drawn = []
    for name in FIGURES:
        if drawable(name, recs):
            drawn.append(draw(name, recs, out))
        else:
            print(f"note: {name}.png not drawn: its record ({FIGURES[name][0]}) lacks the runs "
                  "with their errors (regenerate it)", file=sys.stderr)
    return drawn


def run_tutorial() -> dict:
    """Rerun ``examples/noisy_gd.py``'s checks (orders 1 and 2, seed 0) into a record."""
    import torch

    import smetool

    validation = _load("validation_script", ROOT / "scripts" / "validation.py")
    example = _load("noisy_gd_example", ROOT / "examples" / "noisy_gd.py")
    A = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    algorithm = example.NoisyGD(A, torch.tensor([1.0, -1.0], dtype=torch.float64), sigma=0.5)
    lrs = [0.1, 0.05, 0.025, 0.0125]
    cases = []
    for order, paths in ((1, 2_000), (2, 20_000)):
        result = smetool.verify(algorithm, lrs, paths, horizon=1.0, order=order,
                                steps_per_lr=4, seed=0, progress=False)
        cases.append(_case(result, "noisy-gd", order, paths, lrs, validation))
    return {"fast": False, "machine": validation.machine("cpu"),
            "command": "python scripts/doc_figures.py --run",
            "sections": [{"kind": "plugins", "title": "The plug-in tutorial's example",
                          "cases": cases}]}


def _case(result, name: str, order: int, paths: int, lrs: list[float], validation) -> dict:
    table = result.weak_errors
    tests = []
    for k, f in enumerate(table.names):
        v = result.verdicts[f]
        fit = result.fits.get(f)
        tests.append({"test_function": f, "steps": list(lrs),
                      "errors": table.errors[k, -1].tolist(),
                      "stderrs": table.stderrs[k, -1].tolist(),
                      "slope": None if fit is None else fit.slope,
                      "ci": None if fit is None else list(fit.ci),
                      "series": validation.series_record(v), "verdict": v.verdict.value,
                      "reasons": list(v.reasons)})
    controls = [{"name": c.name, "why": c.why, "hard": c.hard, "rejected": c.rejected,
                 "rejected_by": sorted(f for f, r in c.rejected_by.items() if r),
                 "errors": {f: c.weak_errors.errors[k, -1].tolist()
                            for k, f in enumerate(c.weak_errors.names)},
                 "stderrs": {f: c.weak_errors.stderrs[k, -1].tolist()
                             for k, f in enumerate(c.weak_errors.names)}}
                for c in result.controls.values()]
    return {"plugin": name, "order": order, "paths": paths, "lrs": list(lrs),
            "command": f"python examples/noisy_gd.py (order {order})",
            "alpha": result.settings["alpha"], "seconds": result.seconds, "tests": tests,
            "controls": controls, "verdict": result.verdict.value,
            "reasons": list(result.reasons), "report": result.table()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true",
                        help="rerun the plug-in tutorial's example into docs/tutorials.json first")
    args = parser.parse_args(argv)
    if args.run:
        started = datetime.datetime.now()
        record = run_tutorial()
        record["seconds"] = (datetime.datetime.now() - started).total_seconds()
        RECORDS["tutorials"].write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {RECORDS['tutorials']}")
    for path in draw_all():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
