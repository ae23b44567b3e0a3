"""The extension point of the analyses: a :class:`Measure` reads a trained
:class:`~smetool.analysis.study.Study` and returns numbers, findings and a figure.

A measure is one module in :mod:`smetool.analysis.measures` that defines ``MEASURE``, an instance
of a :class:`Measure` subclass; :func:`registered_measures` finds every such module (nothing is
listed by hand), so adding an analysis is adding that one file (and its test). A measure declares
which studies it belongs to (``"analyze"``: one algorithm against gradient descent, with trajectory
windows; ``"compare"``: several algorithms trained to the same loss) and its place in the report
(``order``).
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..bibliography import Reference
from ..jsonutil import json_safe
from .findings import Finding
from .study import Study

__all__ = ["Measure", "Measurement", "registered_measures", "STUDIES"]

STUDIES = ("analyze", "compare")
"""The kinds of study a measure can belong to."""


@dataclass(frozen=True)
class Measurement:
    """What one measure found.

    Attributes
    ----------
    name : str
        The measure's name.
    data : dict
        Its numbers (tensors allowed; written as strict JSON).
    findings : dict of str to dict of str to Finding
        By algorithm label, then by finding name.
    objects : dict
        Results kept for the figure and for callers (not written to JSON).
    """

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, dict[str, Finding]] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"data": json_safe(self.data),
                "findings": {label: {k: f.to_dict() for k, f in group.items()}
                             for label, group in self.findings.items()}}


class Measure(abc.ABC):
    """One analysis of the trained end points (module docstring).

    Attributes
    ----------
    name : str
        Unique; the key of its record and the name of its figure (``NAME.png``).
    title : str
        For the figure and the summary.
    studies : frozenset of str
        Where it runs (:data:`STUDIES`).
    order : int
        Its place in reports (smaller first).
    references : tuple of Reference
        The papers whose claims it checks (for ``citation.bib``).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    studies: ClassVar[frozenset[str]] = frozenset(STUDIES)
    order: ClassVar[int] = 100
    references: ClassVar[tuple[Reference, ...]] = ()

    def applies(self, study: Study) -> bool:
        """Whether the study has what the measure needs (e.g. units, held-out data)."""
        return True

    @abc.abstractmethod
    def run(self, study: Study) -> Measurement:
        """Measure the study."""

    def figure(self, measurement: Measurement, study: Study, path: Path) -> bool:
        """Draw ``path`` (a PNG) from the measurement; return whether a figure was written."""
        return False

    def columns(self, measurement: Measurement) -> dict[str, dict[str, Any]]:
        """Per-seed quantities for the report's table: column name → algorithm → ``(P,)``."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def registered_measures(study: str) -> tuple[Measure, ...]:
    """Every ``MEASURE`` of the modules of :mod:`smetool.analysis.measures` that runs in
    ``study``, in their ``order``.

    Raises
    ------
    ValueError
        An unknown study, or two measures with one name.
    TypeError
        A module whose ``MEASURE`` is not a :class:`Measure`.
    """
    if study not in STUDIES:
        raise ValueError(f"`study` must be one of {', '.join(STUDIES)}; got {study!r}.")
    package = importlib.import_module(f"{__package__}.measures")
    found: dict[str, Measure] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        measure = getattr(module, "MEASURE", None)
        if not isinstance(measure, Measure):
            raise TypeError(f"{module.__name__} must define MEASURE, a Measure; got "
                            f"{type(measure).__name__}.")
        if measure.name in found:
            raise ValueError(f"two measures are named {measure.name!r}.")
        found[measure.name] = measure
    return tuple(sorted((m for m in found.values() if study in m.studies),
                        key=lambda m: (m.order, m.name)))
