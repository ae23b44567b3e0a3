"""The record of an analysis: :class:`StudyReport` (strict JSON, a summary, the figures)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..algorithms.training import Trajectory
from ..bibliography import Reference, unique_references
from ..jsonutil import json_safe
from .figures import loss_figure
from .findings import CONFIDENCE, VERDICTS, Finding
from .measure import Measure, Measurement
from .study import Study

__all__ = ["StudyReport", "markdown_table", "interval_text"]


@dataclass(frozen=True)
class StudyReport:
    """Everything an analysis measured (JSON via :meth:`to_dict`).

    Attributes
    ----------
    kind : {"analyze", "compare"}
    config : dict
        The settings, seeds, learning rates and timings.
    trajectories : dict of str to Trajectory
        By algorithm label, the reference (gradient descent) first.
    measurements : dict of str to Measurement
        By measure name, in report order.
    references : tuple of Reference
        The papers of the algorithms and of the measures (``citation.bib``).
    study : Study
        The trained state (end points, Hessians), not in the JSON.
    files : tuple of str
        Written files; empty without an output folder.
    """

    kind: str
    config: dict[str, Any]
    trajectories: dict[str, Trajectory]
    measurements: dict[str, Measurement]
    references: tuple[Reference, ...]
    study: Study = field(repr=False)
    measures: tuple[Measure, ...] = field(default=(), repr=False)
    files: tuple[str, ...] = ()

    @property
    def findings(self) -> dict[str, dict[str, Finding]]:
        """Every finding, by algorithm label and then by name (measures in report order)."""
        out: dict[str, dict[str, Finding]] = {}
        for m in self.measurements.values():
            for label, group in m.findings.items():
                out.setdefault(label, {}).update(group)
        return out

    @property
    def columns(self) -> dict[str, dict[str, Any]]:
        """The table's per-seed quantities: column → algorithm → ``(P,)`` (measures in order)."""
        out: dict[str, dict[str, Any]] = {}
        for m in self.measures:
            if m.name in self.measurements:
                out.update(m.columns(self.measurements[m.name]))
        return out

    def table(self) -> str:
        """Markdown: every quantity per algorithm, then every finding (:func:`markdown_table`)."""
        return markdown_table(self.to_dict())

    def to_dict(self) -> dict:
        """Strict JSON (no NaN: non-finite numbers are ``null``)."""
        return json_safe({
            "kind": self.kind,
            "config": self.config,
            "table": self.columns,
            "findings": {label: {k: f.to_dict() for k, f in group.items()}
                         for label, group in self.findings.items()},
            "trajectories": {k: t.to_dict() for k, t in self.trajectories.items()},
            "measurements": {k: m.to_dict()["data"] for k, m in self.measurements.items()},
            "files": list(self.files),
        })

    def summary(self) -> str:
        """One line per finding: verdict, numbers and the control's verdict."""
        lines = [f"{self.kind} on {self.config['landscape']} ({self.config['n_seeds']} seeds):"]
        for label, traj in self.trajectories.items():
            lines.append(f"  {label}: lr {traj.lr:g}, reached the target on "
                         f"{int(traj.reached.sum())}/{traj.reached.numel()} seeds, final loss "
                         f"{float(traj.loss[-1].median()):.4g} (median)" if traj.target is not None
                         else f"  {label}: lr {traj.lr:g}, {int(traj.steps[-1])} steps, final "
                         f"loss {float(traj.loss[-1].median()):.4g} (median)")
        for label, group in self.findings.items():
            lines.append(f" {label}:")
            lines += [f"  {f.line()}" for f in group.values()]
        return "\n".join(lines)

    def write(self, out_dir: str | os.PathLike) -> StudyReport:
        """Write ``report.json``, ``loss.png`` and one ``MEASURE.png`` per measure into
        ``out_dir``; return the report with :attr:`files` set."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "loss.png"]
        loss_figure(self.trajectories, f"{self.kind}: training loss on {self.config['landscape']}",
                    files[0])
        for m in self.measures:
            path = out / f"{m.name}.png"
            if m.name in self.measurements and m.figure(self.measurements[m.name], self.study,
                                                        path):
                files.append(path)
        files += [out / "table.md", out / "report.json"]
        (out / "table.md").write_text(self.table())
        report = replace(self, files=tuple(str(f) for f in files))
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1, allow_nan=False))
        return report

    def __repr__(self) -> str:
        counts = {v: sum(f.verdict == v for g in self.findings.values() for f in g.values())
                  for v in VERDICTS}
        return (f"StudyReport({self.kind}, {self.config['landscape']}, "
                f"algorithms={list(self.trajectories)}, "
                + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")")


def markdown_table(record: dict) -> str:
    """The tables of a report's JSON record (:meth:`StudyReport.to_dict`): every quantity per
    algorithm (mean and 98 % t-interval over the seeds), then every finding with its verdict and
    its negative control's."""
    columns, labels = record["table"], list(record["trajectories"])
    lines = ["| algorithm | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label in labels:
        cells = [interval_text(col.get(label)) for col in columns.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| algorithm | finding (claimed sign) | per-seed mean [98 % interval] | "
              "verdict | control |", "|---|---|---|---|---|"]
    for label, group in record["findings"].items():
        for f in group.values():
            low, high = f["interval"]
            numbers = "n/a" if low is None else f"{f['mean']:+.3g} [{low:+.3g}, {high:+.3g}]"
            ctrl = f["control"]["verdict"] if f["control"] is not None else "–"
            claim = f["claim"].replace("|", "\\|")
            lines.append(f"| {label} | {claim} ({'< 0' if f['sign'] < 0 else '> 0'}) | "
                         f"{numbers} | **{f['verdict']}** | {ctrl} |")
    return "\n".join(lines) + "\n"


def interval_text(values: Any) -> str:
    """``mean [low, high]``: the mean of per-seed values and its 98 % t-interval (``n/a`` with
    fewer than 2 finite values)."""
    if values is None:
        return "n/a"
    x = np.asarray([np.nan if v is None else v for v in np.ravel(
        values.cpu().numpy() if isinstance(values, torch.Tensor) else values)], dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return "n/a"
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return f"{x.mean():.4g} [{x.mean() - half:.4g}, {x.mean() + half:.4g}]"


def collect_references(study: Study, measures: tuple[Measure, ...]) -> tuple[Reference, ...]:
    """The references of the algorithms that ran and of the measures."""
    return unique_references([*(a.cited_references() for a in study.algorithms.values()),
                              *(m.references for m in measures)])
