"""Argument checks, one rule each, shared by every module of smetool.

Each check returns the value in its canonical type or raises with a one-line message that names
the argument, the constraint and the value received, prefixed by the owner when one is given:
``"SGDLeastSquares: `lr` must be a positive finite number; got -1."``. Booleans are never numbers
here (``True`` is refused where an int or float is asked for).
"""

from __future__ import annotations

import enum
import importlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "check_positive_int",
    "check_nonnegative_int",
    "check_path_count",
    "check_seed",
    "check_positive",
    "check_nonnegative",
    "check_lr",
    "check_keep_prob",
    "check_batch_size",
    "check_confidence",
    "check_time",
    "whole_steps",
    "check_test_functions",
    "check_distinct_positive",
    "check_choice",
    "import_object",
]

#: Relative tolerance of "a whole number of steps": a span ``T`` is ``k`` steps of ``h`` when
#: ``|k h − T| ≤ WHOLE_STEP_RTOL · max(1, |T|)`` (room for the rounding of decimal step sizes).
WHOLE_STEP_RTOL = 1e-9


def _who(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(value: Any, name: str, owner: str | None = None) -> int:
    """``value`` as an ``int`` ≥ 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{_who(owner)}`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def check_nonnegative_int(value: Any, name: str, owner: str | None = None) -> int:
    """``value`` as an ``int`` ≥ 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{_who(owner)}`{name}` must be a non-negative integer; got {value!r}.")
    return int(value)


def check_path_count(value: Any, name: str = "n_paths", owner: str | None = None) -> int:
    """A path count that gives a variance: an integer ≥ 2."""
    if not _is_int(value) or value < 2:
        raise ValueError(
            f"{_who(owner)}`{name}` must be an integer ≥ 2 (a standard error needs a variance); "
            f"got {value!r}."
        )
    return int(value)


def check_seed(value: Any, owner: str | None = None) -> int:
    """A seed: a non-negative integer."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{_who(owner)}`seed` must be a non-negative integer; got {value!r}.")
    return int(value)


def check_positive(value: Any, name: str, owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number > 0."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{_who(owner)}`{name}` must be a positive finite number; got {value!r}.")
    return float(value)


def check_nonnegative(value: Any, name: str, owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number ≥ 0."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{_who(owner)}`{name}` must be a finite non-negative number; got {value!r}."
        )
    return float(value)


def check_lr(value: Any, owner: str | None = None) -> float:
    """A learning rate: a finite real number > 0."""
    return check_positive(value, "lr", owner)


def check_keep_prob(value: Any, name: str = "keep_prob", owner: str | None = None) -> float:
    """A dropout keep probability ``p ∈ (0, 1]``.

    Raises
    ------
    TypeError
        For a value that is not a real number (a bool included).
    ValueError
        For a real number outside ``(0, 1]``.
    """
    if not _is_real(value):
        raise TypeError(f"{_who(owner)}`{name}` must be a real number in (0, 1]; got {value!r}.")
    if not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{_who(owner)}`{name}` must be in (0, 1]; got {value!r}.")
    return float(value)


def check_batch_size(value: Any, n: int, owner: str | None = None) -> int:
    """A minibatch size: an integer in ``[1, n]``."""
    if not _is_int(value) or not 1 <= value <= n:
        raise ValueError(
            f"{_who(owner)}`batch_size` must be an integer in [1, n] = [1, {n}]; got {value!r}.")
    return int(value)


def check_confidence(value: Any, name: str = "confidence") -> float:
    """A confidence level in ``(0, 1)``."""
    if not _is_real(value) or not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1); got {value!r}.")
    return float(value)


def check_time(value: Any, name: str = "t", owner: str | None = None) -> float:
    """A time: a finite real number ≥ 0."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{_who(owner)}`{name}` must be a finite number ≥ 0; got {value!r}.")
    return float(value)


def whole_steps(span: float, step: float, *, span_name: str, step_name: str,
                owner: str | None = None, allow_zero: bool = False) -> int:
    """The number of steps ``k = span / step``, which must be a whole number.

    The one rule of smetool for "a whole number of steps" (solver grids, horizons of learning
    rates, save times): ``|k · step − span| ≤ 1e-9 · max(1, |span|)`` with ``k = round(span/step)``
    and ``k ≥ 1`` (``k ≥ 0`` with ``allow_zero``).

    Raises
    ------
    ValueError
        "`span_name` (…) must be a whole number of `step_name` steps; got … (x steps)."
    """
    k = round(span / step)
    if k < (0 if allow_zero else 1) or abs(k * step - span) > WHOLE_STEP_RTOL * max(1.0, abs(span)):
        raise ValueError(
            f"{_who(owner)}`{span_name}` ({span:g}) must be a whole number of steps of "
            f"`{step_name}` ({step:g}); got {span / step:.6g} steps."
        )
    return int(k)


def check_test_functions(test_functions: Any, owner: str | None = None
                         ) -> dict[str, Callable[..., Any]]:
    """A non-empty mapping of names (non-empty strings) to callables."""
    if not isinstance(test_functions, Mapping) or not test_functions:
        raise ValueError(
            f"{_who(owner)}`test_functions` must be a non-empty dict mapping names to functions "
            f"(N, D) -> (N,); got {test_functions!r}."
        )
    for name, g in test_functions.items():
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{_who(owner)}`test_functions` keys must be non-empty strings; got {name!r}.")
        if not callable(g):
            raise TypeError(
                f"{_who(owner)}`test_functions[{name!r}]` must be callable; got "
                f"{type(g).__name__}.")
    return dict(test_functions)


def check_distinct_positive(values: Any, name: str, owner: str | None = None,
                            minimum: int = 1) -> tuple[float, ...]:
    """A sequence of at least ``minimum`` distinct, positive, finite numbers, as floats."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{_who(owner)}`{name}` must be a sequence of positive numbers; got {values!r}."
        ) from None
    if len(out) < minimum:
        raise ValueError(
            f"{_who(owner)}`{name}` must hold at least {minimum} value{'s' if minimum > 1 else ''}; "
            f"got {list(out)}.")
    bad = [v for v in out if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"{_who(owner)}`{name}` must be positive and finite; got {bad[0]!r}.")
    if len(set(out)) != len(out):
        raise ValueError(f"{_who(owner)}`{name}` must be distinct; got {list(out)}.")
    return out


def check_sequence_of_times(times: Sequence[float] | Any, owner: str | None = None
                            ) -> tuple[float, ...]:
    """Save times: a number or a non-empty sequence of finite numbers ≥ 0."""
    if _is_real(times):
        times = (times,)
    try:
        values = tuple(float(t) for t in times)
    except TypeError:
        raise ValueError(
            f"{_who(owner)}`times` must be a number or a sequence of times; got {times!r}."
        ) from None
    if not values or any(not (math.isfinite(t) and t >= 0) for t in values):
        raise ValueError(
            f"{_who(owner)}`times` must be non-empty, finite and ≥ 0; got {list(values)}.")
    return values


E = TypeVar("E", bound=enum.Enum)


def check_choice(kind: type[E], value: Any, name: str) -> E:
    """``value`` as a member of the enum ``kind`` (a member or its value), else a one-line
    ``ValueError`` naming ``name`` and listing the valid values."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(str(member.value) for member in kind)
        raise ValueError(f"`{name}` must be one of {valid}; got {value!r}.") from None


def import_object(spec: Any, name: str) -> Any:
    """The object named by ``"package.module:attribute"`` (a dotted attribute path allowed), for
    options that take a user's own code (``--model pkg.nets:factory``).

    The module is imported (running its top level, as ``python -c "import …"`` would); nothing
    is called.

    Raises
    ------
    ValueError
        "`name` must be MODULE:OBJECT …; got …", the module cannot be imported (with the reason),
        or it has no such attribute.
    """
    text = str(spec)
    module_name, sep, attribute = text.partition(":")
    if not sep or not module_name or not attribute or ":" in attribute:
        raise ValueError(f"`{name}` must be MODULE:OBJECT (e.g. mypkg.nets:build); got {text!r}.")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure of the user's import is reported, in one line
        raise ValueError(f"`{name}`: cannot import module {module_name!r} "
                         f"({type(exc).__name__}: {exc}).") from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"`{name}`: module {module_name!r} has no attribute {attribute!r}.")
        obj = getattr(obj, part)
    return obj
