"""Render the measured numbers and figures in the README, the home page and the tutorials from
their records, or check them.

    python scripts/readme_numbers.py          # rewrite the generated blocks, redraw the figures
    python scripts/readme_numbers.py --check  # exit 1 when a document differs from the rendering

The numbers come from ``docs/validation.json`` (``make validation``) and ``docs/tutorials.json``
(``python scripts/doc_figures.py --run``), the records of the commits they name, so the prose
cannot drift from what was measured: the test suite runs ``--check``. The blocks sit between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers:

* ``numbers`` — the dropout checks of ``make demo`` (README.md, docs/index.md);
* ``report:PLUGIN-ORDER`` — the report ``smetool verify`` printed in the run;
* ``summary:PLUGIN-ORDER`` — one sentence: the verdict, the smallest ``|e|/SE``, the slopes, the
  time, the commit;
* ``figure:NAME`` — ``docs/figures/NAME.png`` (drawn by ``scripts/doc_figures.py`` from the
  record; the PNG cites the record's commit, checked by ``tests/test_doc_numbers.py``) with its
  caption.
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


def _plugin_case(records: dict, key: str) -> tuple[str, dict, dict]:
    """``(record name, record, case)`` of ``PLUGIN-ORDER`` in the first record that has it."""
    name, order = key.rsplit("-", 1)
    for record_name, record in records.items():
        plugins = next((s for s in record["sections"] if s["kind"] == "plugins"), None)
        for case in (plugins or {}).get("cases", []):
            if case["plugin"] == name and case["order"] == int(order):
                return record_name, record, case
    raise KeyError(f"no record has a run of {name} at order {order}")


def _source(record_name: str, record: dict) -> str:
    m = record["machine"]
    return (f"`docs/{record_name}.json`, commit `{m['commit']}`"
            + (" with uncommitted changes" if m.get("uncommitted_changes") else "")
            + f", {m['date_utc']} UTC")


def _report(records: dict, key: str) -> str:
    _, _, case = _plugin_case(records, key)
    return "\n".join([f"<!-- report:{key}:begin -->", "", "```", case["report"], "```", "",
                      f"<!-- report:{key}:end -->"])


def _summary(records: dict, key: str) -> str:
    record_name, record, case = _plugin_case(records, key)
    snr = min(abs(e) / s for f in case["tests"] for e, s in zip(f["errors"], f["stderrs"]))
    slopes = [f["slope"] for f in case["tests"] if f.get("slope") is not None]
    spread = (f"; log–log slopes {min(slopes):.2f}–{max(slopes):.2f}" if slopes else "")
    failed = sum(1 for c in case["controls"] if c["rejected"])
    controls = (f"; {failed} of {len(case['controls'])} negative controls failed"
                if case["controls"] else "")
    text = (f"`{case['command']}` (seed 0): verdict **{case['verdict']}**, every error at "
            f"{snr:.1f} standard errors or more{spread}{controls}, {case['seconds']:.0f} s "
            f"({_source(record_name, record)}).")
    return f"<!-- summary:{key}:begin -->\n{text}\n<!-- summary:{key}:end -->"


FIGURE_CAPTIONS = {
    "verify-dropout": "the weak errors of both dropout checks",
    "tutorial-own-network": "the weak errors of `smetool verify dropout-net` (its defaults)",
    "tutorial-plugin": "the weak errors of the example's checks at orders 1 and 2",
}


def _figure(records: dict, key: str, document: str) -> str:
    record_name = FIGURE_RECORDS[key]
    record = records[record_name]
    prefix = "docs/" if not document.startswith("docs/") else ""
    text = (f"![{FIGURE_CAPTIONS[key]}]({prefix}figures/{key}.png)\n\n"
            f"*Figure: {FIGURE_CAPTIONS[key]} — |error| ± 2 SE against the learning rate, the "
            "fitted error series (solid), the claimed order (dashed), the negative controls in "
            f"grey. Drawn by `scripts/doc_figures.py` from {_source(record_name, record)}.*")
    return f"<!-- figure:{key}:begin -->\n{text}\n<!-- figure:{key}:end -->"


FIGURE_RECORDS = {"verify-dropout": "validation", "tutorial-own-network": "validation",
                  "tutorial-plugin": "tutorials"}


def _replace_blocks(text: str, kind: str, render_block) -> str:
    marker = f"<!-- {kind}:"
    pos = 0
    while (start := text.find(marker, pos)) >= 0:
        key = text[start + len(marker):text.index(":begin", start)]
        end_tag = f"<!-- {kind}:{key}:end -->"
        stop = text.index(end_tag, start) + len(end_tag)
        block = render_block(key)
        text = text[:start] + block + text[stop:]
        pos = start + len(block)
    return text


def rendered(text: str, records: dict, document: str = "README.md") -> str:
    """``text`` with every generated block replaced by its rendering (``records``: the
    validation record, or a dict of records by name)."""
    if "machine" in records:  # the validation record alone
        records = {"validation": records}
    if BEGIN in text:
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + render(records["validation"]) + text[stop:]
    text = _replace_blocks(text, "report", lambda key: _report(records, key))
    text = _replace_blocks(text, "summary", lambda key: _summary(records, key))
    return _replace_blocks(text, "figure", lambda key: _figure(records, key, document))


DOCUMENTS = ("README.md", "docs/index.md", "docs/tutorial-verify-dropout.md",
             "docs/tutorial-own-network.md", "docs/tutorial-plugin.md")


def _records() -> dict:
    return {name: json.loads((ROOT / "docs" / f"{name}.json").read_text())
            for name in ("validation", "tutorials") if (ROOT / "docs" / f"{name}.json").exists()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail when a document is stale (figures are checked by the tests)")
    args = parser.parse_args(argv)
    records = _records()
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        text = path.read_text()
        updated = rendered(text, records, name)
        if updated != text:
            stale.append(name)
            if not args.check:
                path.write_text(updated)
    if args.check and stale:
        print(f"{', '.join(stale)}: the generated numbers differ from their records "
              "(docs/validation.json, docs/tutorials.json); run python scripts/readme_numbers.py",
              file=sys.stderr)
        return 1
    if not args.check:
        figures = _doc_figures().draw_all(records)
        print(f"rewrote {', '.join(stale) or 'nothing'}; drew {len(figures)} figures")
    return 0


def _doc_figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("doc_figures", ROOT / "scripts" /
                                                  "doc_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    raise SystemExit(main())
