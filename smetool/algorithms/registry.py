"""Which plug-ins ``smetool verify NAME`` knows: smetool's own and those of other packages.

A plug-in written by a user does not need to be registered to be verified: pass the object to
:func:`smetool.verify`. Registration makes it a command. There are two ways:

* another installed package publishes a :class:`~smetool.algorithms.PluginSpec` (or a callable
  returning one or several) in the entry-point group ``smetool.plugins`` of its metadata, e.g. in
  its ``pyproject.toml``::

      [project.entry-points."smetool.plugins"]
      noisy-gd = "my_package.plugin:PLUGIN"

  and ``smetool list`` and ``smetool verify noisy-gd`` find it (the Python convention, as for
  pytest or setuptools plug-ins);
* code running in the same process calls :func:`register`.

Every plug-in module of smetool declares its own ``PLUGINS``; :data:`BUILTIN_MODULES` lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from .spec import PluginSpec

__all__ = ["ENTRY_POINT_GROUP", "BUILTIN_MODULES", "plugins", "get_plugin", "register",
           "plugin_errors", "refresh"]

ENTRY_POINT_GROUP = "smetool.plugins"
"""The entry-point group through which other packages publish plug-ins."""

BUILTIN_MODULES = (
    "smetool.algorithms.dropout",
    "smetool.algorithms.dropout_net",
    "smetool.algorithms.sgd",
    "smetool.algorithms.sgd_scalar",
    "smetool.algorithms.momentum",
    "smetool.algorithms.svag",
    "smetool.algorithms.rmsprop",
    "smetool.algorithms.adam",
    "smetool.algorithms.sam",
    "smetool.algorithms.signsgd",
    "smetool.algorithms.sgd_wd",
    "smetool.algorithms.derived_two_layer",
    "smetool.algorithms.gaussian_dropout",
)
"""smetool's own plug-in modules; each declares ``PLUGINS``, a tuple of PluginSpec."""

_state: dict[str, dict] = {}


def _as_specs(obj: object, where: str) -> list[PluginSpec]:
    """A spec, an iterable of specs, or a callable returning either."""
    if callable(obj) and not isinstance(obj, PluginSpec):
        obj = obj()
    if isinstance(obj, PluginSpec):
        return [obj]
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        specs = list(obj)
        if specs and all(isinstance(s, PluginSpec) for s in specs):
            return specs
    raise TypeError(f"{where} must give an smetool PluginSpec (or several); got "
                    f"{type(obj).__name__}.")


def _add(table: dict[str, PluginSpec], spec: PluginSpec, where: str) -> None:
    if spec.name in table:
        raise ValueError(f"{where}: a plug-in named {spec.name!r} is already registered.")
    table[spec.name] = spec


def _load_entry_point(ep: EntryPoint) -> list[PluginSpec]:
    dist = getattr(ep.dist, "name", None) or "an installed package"
    where = f"entry point {ep.name!r} of {dist} ({ep.value})"
    try:
        obj = ep.load()
        return _as_specs(obj, where)
    except Exception as exc:  # a broken third-party plug-in must not break smetool
        raise RuntimeError(f"{where} could not be loaded: {type(exc).__name__}: {exc}") from exc


def _discover() -> None:
    table: dict[str, PluginSpec] = {}
    errors: dict[str, str] = {}
    for module in BUILTIN_MODULES:
        for spec in importlib.import_module(module).PLUGINS:
            _add(table, spec, module)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            for spec in _load_entry_point(ep):
                _add(table, spec, f"entry point {ep.name!r}")
        except (RuntimeError, ValueError) as exc:
            errors[ep.name] = str(exc)
    _state["table"], _state["errors"] = table, errors


def refresh() -> None:
    """Forget what was discovered (and registered), so that the next call looks again."""
    _state.clear()


def plugins() -> dict[str, PluginSpec]:
    """Every plug-in by name: smetool's, those of installed packages, and registered ones.

    Entry points that fail to load are left out and reported by :func:`plugin_errors`.
    """
    if "table" not in _state:
        _discover()
    return dict(_state["table"])


def plugin_errors() -> dict[str, str]:
    """Entry points of the ``smetool.plugins`` group that could not be loaded, and why."""
    if "table" not in _state:
        _discover()
    return dict(_state["errors"])


def get_plugin(name: str) -> PluginSpec:
    """The plug-in called ``name``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones, and says why an entry point of that
        name could not be loaded).
    """
    table = plugins()
    if name in table:
        return table[name]
    broken = plugin_errors().get(name)
    if broken:
        raise ValueError(f"plug-in {name!r} is installed but broken: {broken}")
    raise ValueError(f"unknown plug-in {name!r}; the plug-ins are {', '.join(sorted(table))}.")


def register(spec: PluginSpec) -> None:
    """Make a plug-in available to ``smetool verify NAME`` in this process (a name may be
    registered once).

    Raises
    ------
    TypeError
        ``spec`` is not a :class:`PluginSpec`.
    ValueError
        The name is taken.
    """
    if not isinstance(spec, PluginSpec):
        raise TypeError(f"`spec` must be a PluginSpec; got {type(spec).__name__}.")
    if "table" not in _state:
        _discover()
    _add(_state["table"], spec, "register")
