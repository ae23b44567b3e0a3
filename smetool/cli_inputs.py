"""The command line's inputs, checked before anything is built or simulated.

Every value of ``smetool`` is checked here or by its argparse converter before the first path is
simulated: the numbers (converters), the output paths (:func:`output_folder`,
:func:`output_file`), the optional plotting dependency (:func:`require_plotting`) and the
scheduler (:func:`smetool.montecarlo.check_scheduler`). A bad value is one line naming the flag,
the constraint and the value, exit status 2 — never an ``[Errno 2]`` after an hour of work.

:func:`taken_flags` reads the flags of ``smetool verify`` from the parser itself, so that a
plug-in option that would clash with one of them is found from the same source that argparse uses
(a hand copy of the names drifts); :func:`join_negative_values` lets ``--lrs -0.1,0.05`` reach the
converter (argparse would read ``-0.1,0.05`` as an unknown option).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .algorithms.spec import Option, PluginSpec

__all__ = ["CLIError", "positive_int", "positive_float", "non_negative_int", "lr_list",
           "window_list", "probability", "output_folder", "output_file", "require_plotting",
           "taken_flags", "clashing_plugins", "join_negative_values", "plugin_option_type"]


class CLIError(Exception):
    """A user error, printed as one line without a traceback."""


def positive_int(text: str) -> int:
    """argparse converter: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse converter: an integer ≥ 0 (seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer; got {value}")
    return value


def plugin_option_type(option: Option) -> Callable[[str], Any]:
    """argparse converter of a plug-in's option: its own ``type``, whose ``ValueError`` or
    ``TypeError`` becomes argparse's one-line message (named after the option)."""
    def convert(text: str) -> Any:
        try:
            return option.type(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(f"{exc} (from {text!r})") from None

    convert.__name__ = option.name  # argparse names the converter in some messages
    return convert


def probability(text: str) -> float:
    """A number in (0, 1) (argparse ``type=``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {value:g}")
    return value


def positive_float(text: str) -> float:
    """argparse converter: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {value:g}")
    return value


def lr_list(text: str) -> list[float]:
    """argparse converter: positive numbers separated by commas or spaces (at least one)."""
    parts = text.replace(",", " ").split()
    if not parts:
        raise argparse.ArgumentTypeError(
            f"must be a positive number (a list, e.g. 0.04,0.02); got {text!r}")
    values = []
    for part in parts:
        try:
            values.append(positive_float(part))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"must be a positive number (a list, e.g. 0.04,0.02); got {part!r} in {text!r}"
            ) from None
    return values


def window_list(text: str) -> tuple[int, ...]:
    """argparse converter: step counts ≥ 20."""
    try:
        values = tuple(positive_int(t) for t in text.replace(",", " ").split())
    except argparse.ArgumentTypeError:
        values = ()
    if not values or min(values) < 20:
        raise argparse.ArgumentTypeError(f"must be step counts ≥ 20; got {text!r}")
    return values


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def output_folder(flag: str, path: str | None) -> Path | None:
    """The folder ``path``, created (with its parents) and probed with a write, or ``None``.

    Raises
    ------
    CLIError
        It cannot be created or written (a file in the way, no permission), naming ``flag``.
    """
    if path is None:
        return None
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{flag} must be a folder; got {path!r}, which is a file.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".smetool-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CLIError(f"{flag}: cannot write to the folder {path!r} ({_reason(exc)}).") from None
    return out


def output_file(flag: str, path: str | None) -> Path | None:
    """The file ``path`` if it can be written: its folder exists and is writable, and it is not a
    folder itself; ``None`` for ``None``. Nothing is created (a mistyped folder is an error, not a
    new folder).

    Raises
    ------
    CLIError
        Naming ``flag``, the constraint and ``path``.
    """
    if path is None:
        return None
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        raise CLIError(f"{flag} must be a file path; got {path!r}, which is a folder.")
    if not parent.exists():
        raise CLIError(f"{flag}: the folder {str(parent)!r} of {path!r} does not exist.")
    if not parent.is_dir():
        raise CLIError(f"{flag}: {str(parent)!r} in {path!r} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{flag}: cannot write to the folder {str(parent)!r} of {path!r} "
                       "(permission denied).")
    if target.exists() and not os.access(target, os.W_OK):
        raise CLIError(f"{flag}: cannot overwrite {path!r} (permission denied).")
    return target


def require_plotting(flag: str, path: str | None = None) -> None:
    """Raise unless matplotlib can be imported (and, for ``path``, writes its suffix).

    Raises
    ------
    CLIError
        ``flag`` needs matplotlib (the ``plots`` extra), or the suffix is not an image format.
    """
    try:
        from matplotlib.figure import Figure  # optional: only the plots need it
    except ImportError:
        raise CLIError(f"{flag} writes a plot, which needs matplotlib: pip install "
                       "'smetool[plots]' (or leave out the flag).") from None
    if path is not None:
        formats = Figure().canvas.get_supported_filetypes()
        suffix = Path(path).suffix.lstrip(".").lower()
        if suffix not in formats:
            raise CLIError(f"{flag} must end in an image format ({', '.join(sorted(formats))}); "
                           f"got {path!r}.")


def taken_flags(parsers: Iterable[argparse.ArgumentParser]) -> frozenset[str]:
    """Every option string of ``parsers`` (``--seed``, ``-h``, ``--no-controls``, …), read from
    the parsers themselves."""
    return frozenset(flag for p in parsers for flag in p._option_string_actions)


def clashing_plugins(table: Mapping[str, PluginSpec],
                      parsers: list[argparse.ArgumentParser]) -> dict[str, str]:
    """The plug-ins with an option whose flag ``smetool verify`` already takes, and why.

    The taken flags are read from the parsers themselves (:func:`taken_flags`), so a new option
    of ``smetool verify`` is reserved the moment it exists. Such a plug-in is listed as broken and
    left out; it never breaks the other commands (argparse would raise on the clash)."""
    taken = taken_flags(parsers)
    clashes = {}
    for name, spec in table.items():
        flags = [o.flag for o in spec.options if o.flag in taken]
        if flags:
            clashes[name] = (f"its option {flags[0]} is an option of `smetool verify` itself; "
                             "the plug-in must give it another name in its PluginSpec")
    return clashes


def join_negative_values(argv: Sequence[str],
                         parsers: Iterable[argparse.ArgumentParser]) -> list[str]:
    """``argv`` with ``--flag -value`` written ``--flag=-value`` where ``--flag`` takes a value
    and ``-value`` is not an option: argparse reads ``--lrs -0.1,0.05`` as two options and says
    "expected one argument"; joined, the converter names the bad value."""
    parsers = list(parsers)
    flags = taken_flags(parsers)
    takes_value = {flag for p in parsers for flag, action in p._option_string_actions.items()
                   if action.nargs is None and flag.startswith("--")}
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if (token in takes_value and nxt is not None and nxt.startswith("-") and nxt != "-"
                and nxt.split("=", 1)[0] not in flags):
            out.append(f"{token}={nxt}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out
