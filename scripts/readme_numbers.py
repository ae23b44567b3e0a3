"""Render the measured numbers in the README and the tutorials from the validation record, or
check them.

    python scripts/readme_numbers.py          # rewrite the generated blocks
    python scripts/readme_numbers.py --check  # exit 1 when a document differs from the rendering

The numbers come from ``docs/validation.json`` (``make validation``), the record of the commit it
names, so the prose cannot drift from what was measured: the test suite runs ``--check``. The
blocks sit between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers: ``numbers`` in
README.md (the dropout checks of ``make demo``), ``report:PLUGIN-ORDER`` in the tutorials (the
report ``smetool verify`` printed in the validation run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- numbers:begin -->", "<!-- numbers:end -->"


def _coef(series: dict, which: str) -> str:
    value, se = series[which], series[f"{which}_stderr"]
    if value is None or se is None or not (math.isfinite(value) and math.isfinite(se) and se > 0):
        return "–"
    return f"{value:+.3g} ± {se:.2g} ({value / se:+.1f})"


def _limit(lim: dict) -> str:
    if lim["best"] is None:
        return "not seen"
    return f"≥ {100 * lim['best']:.2g} % (`{lim['best_test']}`)"


def render(record: dict) -> str:
    """The README block: the dropout checks of ``make demo`` at their defaults."""
    plugins = next(s for s in record["sections"] if s["kind"] == "plugins")
    cases = [c for c in plugins["cases"] if c["plugin"] == "dropout"]
    m = record["machine"]
    lines = [BEGIN, "",
             "| check | test function | lower term c (t) | leading c_p (t) | min \\|e\\|/SE | "
             "variance reduction | verdict |", "|---|---|---|---|---|---|---|"]
    for c in sorted(cases, key=lambda c: c["order"]):
        label = f"order {c['order']}"
        for f in c["tests"]:
            lo, hi = f["variance_reduction"]
            lines.append(f"| {label} | `{f['test_function']}` | {_coef(f['series'], 'lower')} | "
                         f"{_coef(f['series'], 'leading')} | {f['min_snr']:.0f} | "
                         f"{lo:.2g} – {hi:.2g} | {f['verdict']} |")
        lines.append(f"| {label} | **the check** ({c['seconds']:.0f} s) | | | | | "
                     f"**{c['verdict']}** |")
    lines += ["", "| check | detection limit | negative controls failed |", "|---|---|---|"]
    for c in sorted(cases, key=lambda c: c["order"]):
        limits = "; ".join(f"{part}: {_limit(lim)}" for part, lim in c["limits"].items()) or (
            "Σ: not tested at order 1 (it enters at O(ε²))")
        failed = ", ".join(f"{ctl['name']}{' (hard)' if ctl['hard'] else ''}"
                           + ("" if ctl["rejected"] else " **NOT failed**") for ctl in c["controls"])
        lines.append(f"| order {c['order']} | {limits} | {failed} |")
    lines += ["", f"Record: `docs/validation.json`, commit `{m['commit']}`, {m['date_utc']} UTC, "
                  f"{m['cpu_count']} CPU cores.", "", END]
    return "\n".join(lines)


def _report(record: dict, key: str) -> str:
    name, order = key.rsplit("-", 1)
    plugins = next(s for s in record["sections"] if s["kind"] == "plugins")
    case = next(c for c in plugins["cases"] if c["plugin"] == name and c["order"] == int(order))
    return "\n".join([f"<!-- report:{key}:begin -->", "", "```", case["report"], "```", "",
                      f"<!-- report:{key}:end -->"])


def rendered(text: str, record: dict) -> str:
    """``text`` with every generated block replaced by its rendering."""
    if BEGIN in text:
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + render(record) + text[stop:]
    marker = "<!-- report:"
    pos = 0
    while (start := text.find(marker, pos)) >= 0:
        key = text[start + len(marker):text.index(":begin", start)]
        end_tag = f"<!-- report:{key}:end -->"
        stop = text.index(end_tag, start) + len(end_tag)
        block = _report(record, key)
        text = text[:start] + block + text[stop:]
        pos = start + len(block)
    return text


DOCUMENTS = ("README.md", "docs/tutorial-verify-dropout.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when README.md is stale")
    args = parser.parse_args(argv)
    record = json.loads((ROOT / "docs" / "validation.json").read_text())
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        text = path.read_text()
        updated = rendered(text, record)
        if updated != text:
            stale.append(name)
            if not args.check:
                path.write_text(updated)
    if args.check and stale:
        print(f"{', '.join(stale)}: the generated numbers differ from docs/validation.json; run "
              "python scripts/readme_numbers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
