"""Atomic checkpoints of Monte-Carlo accumulators, refused when they belong to another run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..stats import StreamingMoments

__all__ = ["CHECKPOINT_VERSION", "save_checkpoint", "read_checkpoint", "load_checkpoint"]

CHECKPOINT_VERSION = 3
"""Version 3: one file per estimate in a checkpoint folder, fingerprints from MonteCarloOptions
with the device fingerprint (device type, GPU model, torch and CUDA versions) and whether the
kernels were compiled."""


def save_checkpoint(path: Path, fingerprint: Mapping[str, Any], next_chunk: int,
                    accumulators: Mapping[str, StreamingMoments]) -> None:
    """Write the accumulators after ``next_chunk`` finished chunks, atomically."""
    state = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": dict(fingerprint),
        "next_chunk": int(next_chunk),
        "moments": {k: v.state_dict() for k, v in accumulators.items()},
    }
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    # os.replace is atomic on POSIX and Windows: a reader sees the old or the new file, never half.
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw content of a checkpoint file (fingerprint, next chunk, accumulator states).

    Raises
    ------
    ValueError
        An unreadable or truncated file, or one of another version.
    """
    try:
        state = torch.load(Path(path), weights_only=True)
    except Exception as exc:  # unreadable or truncated: say which file and why
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({exc}); delete it to start over."
        ) from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a smetool Monte-Carlo checkpoint of version "
            f"{CHECKPOINT_VERSION}; delete it to start over."
        )
    return state


def load_checkpoint(path: Path, fingerprint: Mapping[str, Any]
                    ) -> tuple[int, dict[str, StreamingMoments]]:
    """The next chunk and the accumulators of a checkpoint of the same run.

    Raises
    ------
    ValueError
        A checkpoint of a different run, naming every setting that differs.
    """
    state = read_checkpoint(path)
    saved = state["fingerprint"]
    if saved != dict(fingerprint):
        diffs = [
            f"{k}: checkpoint {saved.get(k)!r} vs now {fingerprint.get(k)!r}"
            for k in sorted(set(saved) | set(fingerprint)) if saved.get(k) != fingerprint.get(k)
        ]
        raise ValueError(
            f"checkpoint {str(path)!r} belongs to a different run ({'; '.join(diffs)}). Pass the "
            "same arguments to resume it, or another checkpoint folder (or delete the file) to "
            "start a new run."
        )
    acc = {k: StreamingMoments.from_state_dict(v) for k, v in state["moments"].items()}
    return int(state["next_chunk"]), acc
