"""Timing shared by the benchmark scripts: synchronised, warmed-up, median of repeats.

A GPU runs kernels asynchronously, so a timer read without synchronising measures the launch, not
the work; the first call pays for tracing, compilation and allocator growth, so it is reported
apart and left out of the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[int], Any], repeats: int, device: torch.device) -> tuple[float, float]:
    """``(seconds of the first call, median seconds of the next repeats calls)``.

    ``fn(i)`` gets the call's index (0 for the warm-up) so that a benchmark can draw fresh random
    numbers per call; every call is bracketed by :func:`synchronize`.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be ≥ 1; got {repeats}.")
    seconds = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        fn(i)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds[0], statistics.median(seconds[1:])
