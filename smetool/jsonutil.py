"""Strict-JSON conversion of results (tensors to lists, NaN and infinities to ``None``)."""

from __future__ import annotations

import json
import math
from typing import Any

from torch import Tensor

__all__ = ["json_safe", "strict_json"]


def json_safe(obj: Any) -> Any:
    """``obj`` with tensors turned into lists and NaN/±inf into ``None`` (strict JSON)."""
    if isinstance(obj, Tensor):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def strict_json(obj: Any, path: str | None = None) -> str:
    """``obj`` (already :func:`json_safe`) as indented strict JSON, written to ``path`` when given
    (with a final newline); returns the text. NaN or infinity left in ``obj`` raise ``ValueError``.
    """
    text = json.dumps(obj, indent=2, allow_nan=False, ensure_ascii=False)
    if path is not None:
        with open(path, "w") as fh:
            fh.write(text + "\n")
    return text
