"""Strict-JSON conversion of results (tensors to lists, NaN and infinities to ``None``)."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

__all__ = ["json_safe"]


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
