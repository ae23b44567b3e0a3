"""The outcome of an order check: pass, fail or inconclusive.

The rule that decides it is the series test of :mod:`smetool.stats.series`
(:func:`~smetool.judge_series`).
"""

from __future__ import annotations

import enum

__all__ = ["Verdict"]


class Verdict(enum.Enum):
    """The outcome of an order check."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
