"""Declarations of plug-ins: their command-line options, defaults and references.

A :class:`PluginSpec` declares everything the command line, the documentation and
:func:`smetool.citation` need to know about a plug-in: how to build it, its own options
(:class:`Option`: name, type, default, help), the defaults of ``smetool verify NAME`` and the
papers behind it. The command line is generated from these declarations; nothing about a plug-in
is written anywhere else. A plug-in from another package is declared the same way and published
through the ``smetool.plugins`` entry-point group (:mod:`smetool.algorithms.registry`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..bibliography import Reference, unique_references
from ..checks import (
    check_distinct_positive,
    check_path_count,
    check_positive,
    check_positive_int,
    whole_steps,
)
from .base import Algorithm
from .capabilities import HasLandscape

__all__ = ["Option", "PluginSpec", "PluginBuildError", "AnalysisSpec", "positive_int_option",
           "positive_option"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_RUN_KEYS = frozenset({"lrs", "horizon", "n_paths", "steps_per_lr", "method"})

class PluginBuildError(RuntimeError):
    """A plug-in's factory failed; the message names the plug-in."""


@dataclass(frozen=True)
class Option:
    """One option of a plug-in, as ``smetool verify NAME --its-option VALUE`` and as the keyword
    ``its_option`` of the plug-in's factory.

    Parameters
    ----------
    name : str
        The factory's keyword (``"keep_prob"``); the flag is ``--keep-prob``.
    type : callable
        Turns the command-line text into the value (``float``, ``int``, or a function that also
        checks it and raises ``ValueError`` with a message).
    default : Any
        The value used when the option is not given (also passed explicitly to the factory, so
        what ``--help`` shows is what runs).
    help : str
        One line for ``--help``.
    """

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or "-" in self.name:
            raise ValueError(
                f"Option: `name` must be a Python identifier in lower case (e.g. 'keep_prob'); "
                f"got {self.name!r}.")
        if not callable(self.type):
            raise TypeError(f"Option {self.name!r}: `type` must be callable; got {self.type!r}.")
        if not isinstance(self.help, str) or not self.help:
            raise ValueError(f"Option {self.name!r}: `help` must be a non-empty string.")

    @property
    def flag(self) -> str:
        """The command-line flag, ``--`` + the name with ``-`` for ``_``."""
        return "--" + self.name.replace("_", "-")


def positive_int_option(name: str) -> Callable[[str], int]:
    """An :class:`Option` ``type``: the text as an integer ≥ 1, the error naming ``name``."""
    def parse(text: str) -> int:
        return check_positive_int(int(text), name)
    return parse


def positive_option(name: str) -> Callable[[str], float]:
    """An :class:`Option` ``type``: the text as a number > 0, the error naming ``name``."""
    def parse(text: str) -> float:
        return check_positive(float(text), name)
    return parse


@dataclass(frozen=True)
class AnalysisSpec:
    """How ``smetool analyze NAME`` and ``smetool compare`` train a plug-in that has a landscape
    (its algorithm class is a :class:`~smetool.algorithms.base.HasLandscape`).

    Parameters
    ----------
    lr : float
        Learning rate on the plug-in's own problem.
    steps : int
        Training steps on its own problem.
    network_lr : float, optional
        Learning rate on a built-in network (``--model``); default: the network's own (that of
        gradient descent on it). Needs ``on_landscape``.
    network_options : dict, optional
        Defaults of the plug-in's options on a network (e.g. a smaller SAM radius).
    on_landscape : callable, optional
        ``on_landscape(landscape, theta0, **options) -> Algorithm``: the plug-in's update rule on
        another :class:`~smetool.models.landscape.Landscape` (a network), called with every
        declared option; ``None``: the plug-in is analysed on its own problem only.
    factory : callable, optional
        ``factory(*, dtype, device, **options) -> Algorithm``: the plug-in on the problem the
        analyses use, where it differs from the verification problem (``PluginSpec.factory``).

    Raises
    ------
    ValueError
        A non-positive ``lr``, ``network_lr`` or ``steps``; ``network_lr`` without
        ``on_landscape``.
    """

    lr: float
    steps: int
    network_lr: float | None = None
    network_options: dict[str, Any] = field(default_factory=dict)
    on_landscape: Callable[..., Algorithm] | None = None
    factory: Callable[..., Algorithm] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_positive(self.lr, "lr", "AnalysisSpec"))
        object.__setattr__(self, "steps", check_positive_int(self.steps, "steps", "AnalysisSpec"))
        if self.network_lr is not None:
            if self.on_landscape is None:
                raise ValueError("AnalysisSpec: `network_lr` needs `on_landscape` (how the rule "
                                 "runs on a network); got None.")
            object.__setattr__(self, "network_lr",
                               check_positive(self.network_lr, "network_lr", "AnalysisSpec"))
        for name in ("on_landscape", "factory"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"AnalysisSpec: `{name}` must be callable; got {value!r}.")

    @property
    def on_networks(self) -> bool:
        """Whether the rule runs on other landscapes (the built-in networks)."""
        return self.on_landscape is not None


def _describe_default(algorithm: Algorithm) -> dict[str, Any]:
    return {"repr": repr(algorithm)}


@dataclass(frozen=True)
class PluginSpec:
    """How ``smetool verify NAME`` builds and runs a plug-in.

    Parameters
    ----------
    name : str
        Lower case letters, digits, ``-`` and ``_`` (``"dropout"``, ``"svag-dropout"``).
    factory : callable
        ``factory(*, dtype, device, **options) -> Algorithm``, called with every declared option.
    description : str
        One line for ``smetool list``.
    orders : tuple of int
        SME orders available.
    lrs, horizon, n_paths, steps_per_lr
        Defaults of ``smetool verify NAME``, chosen so that the default run resolves every error
        point in a few minutes on two CPU cores.
    method : str
        The default SME solver (a name of ``smetool list``).
    order_defaults : dict of int to dict, optional
        Other defaults for a given SME order, e.g. ``{2: {"lrs": (…), "n_paths": 4000}}`` (keys
        among ``lrs``, ``horizon``, ``n_paths``, ``steps_per_lr``, ``method``): an order-2 check
        resolves ``O(ε²)`` errors and usually wants other learning rates and SME steps.
    options : tuple of Option
        The plug-in's own options.
    references : tuple of Reference
        The papers behind the plug-in (default: those of the algorithm class when ``algorithm``
        is given).
    algorithm : type, optional
        The :class:`Algorithm` subclass the factory builds (for documentation and references).
    describe : callable
        ``describe(algorithm) -> dict`` for the JSON report.
    analysis : AnalysisSpec, optional
        How ``smetool analyze NAME`` and ``smetool compare`` train it; needs an ``algorithm`` that
        is a :class:`~smetool.algorithms.base.HasLandscape`.

    Raises
    ------
    ValueError, TypeError
        A declaration that cannot run: a bad name, defaults that do not fit together (a horizon
        that is not a whole number of steps of every learning rate, an odd ``steps_per_lr``),
        option names that repeat. (An option whose flag ``smetool verify`` already takes is
        found by the command line, which reads its own flags from its parser: the plug-in is
        then listed as broken, and the other commands run.)
    """

    name: str
    factory: Callable[..., Algorithm]
    description: str
    orders: tuple[int, ...]
    lrs: tuple[float, ...]
    horizon: float
    n_paths: int
    steps_per_lr: int = 4
    method: str = "heun"
    options: tuple[Option, ...] = ()
    order_defaults: dict[int, dict[str, Any]] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    algorithm: type[Algorithm] | None = None
    describe: Callable[[Any], dict[str, Any]] = field(default=_describe_default, repr=False)
    analysis: AnalysisSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                "PluginSpec: `name` must start with a lower-case letter and hold only lower-case "
                f"letters, digits, '-' and '_'; got {self.name!r}.")
        owner = f"plug-in {self.name!r}"
        if not callable(self.factory):
            raise TypeError(f"{owner}: `factory` must be callable; got {self.factory!r}.")
        orders = tuple(self.orders)
        if not orders or any(isinstance(o, bool) or not isinstance(o, int) or o < 1 for o in orders):
            raise ValueError(f"{owner}: `orders` must be positive integers; got {self.orders!r}.")
        object.__setattr__(self, "orders", orders)
        lrs = check_distinct_positive(self.lrs, "lrs", owner, minimum=2)
        object.__setattr__(self, "lrs", lrs)
        horizon = check_positive(self.horizon, "horizon", owner)
        object.__setattr__(self, "horizon", horizon)
        for lr in lrs:
            whole_steps(horizon, lr, span_name="horizon", step_name="lr", owner=owner)
        object.__setattr__(self, "n_paths", check_path_count(self.n_paths, owner=owner))
        if isinstance(self.steps_per_lr, bool) or not isinstance(self.steps_per_lr, int) \
                or self.steps_per_lr < 2 or self.steps_per_lr % 2:
            raise ValueError(f"{owner}: `steps_per_lr` must be an even integer ≥ 2; got "
                             f"{self.steps_per_lr!r}.")
        _check_coarsest_grid(lrs, horizon, self.steps_per_lr, owner, "")
        options = tuple(self.options)
        for option in options:
            if not isinstance(option, Option):
                raise TypeError(f"{owner}: `options` must hold smetool Option objects; got {option!r}.")
        names = [o.name for o in options]
        if len(set(names)) != len(names):
            raise ValueError(f"{owner}: option names must be distinct; got {names}.")
        object.__setattr__(self, "options", options)
        if self.algorithm is not None and not (isinstance(self.algorithm, type)
                                               and issubclass(self.algorithm, Algorithm)):
            raise TypeError(f"{owner}: `algorithm` must be an Algorithm subclass; got "
                            f"{self.algorithm!r}.")
        for order, overrides in self.order_defaults.items():
            if order not in orders:
                raise ValueError(f"{owner}: `order_defaults` has order {order}, not one of {orders}.")
            unknown = sorted(set(overrides) - _RUN_KEYS)
            if unknown:
                raise ValueError(f"{owner}: `order_defaults[{order}]` has unknown key {unknown[0]!r} "
                                 f"(the keys are {', '.join(sorted(_RUN_KEYS))}).")
            merged = {"lrs": lrs, "horizon": horizon, "n_paths": self.n_paths,
                      "steps_per_lr": self.steps_per_lr, **overrides}
            o_lrs = check_distinct_positive(merged["lrs"], "lrs", owner, minimum=2)
            o_horizon = check_positive(merged["horizon"], "horizon", owner)
            for lr in o_lrs:
                whole_steps(o_horizon, lr, span_name="horizon", step_name="lr", owner=owner)
            check_path_count(merged["n_paths"], owner=owner)
            if merged["steps_per_lr"] < 2 or merged["steps_per_lr"] % 2:
                raise ValueError(f"{owner}: `order_defaults[{order}]` needs an even steps_per_lr ≥ 2.")
            _check_coarsest_grid(o_lrs, o_horizon, merged["steps_per_lr"], owner,
                                 f"`order_defaults[{order}]`: ")
        refs = tuple(self.references)
        if not refs and self.algorithm is not None:
            refs = tuple(self.algorithm.references)
        object.__setattr__(self, "references", unique_references([refs]))
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"{owner}: `method` must be a solver name; got {self.method!r}.")
        if self.analysis is not None:
            if not isinstance(self.analysis, AnalysisSpec):
                raise TypeError(f"{owner}: `analysis` must be an AnalysisSpec; got "
                                f"{type(self.analysis).__name__}.")
            if self.algorithm is None or not issubclass(self.algorithm, HasLandscape):
                raise ValueError(f"{owner}: `analysis` needs an `algorithm` class with a landscape "
                                 "(a HasLandscape).")
            unknown = sorted(set(self.analysis.network_options) - set(names))
            if unknown:
                raise ValueError(f"{owner}: `analysis.network_options` has {unknown[0]!r}, not one "
                                 f"of the plug-in's options ({', '.join(names) or 'none'}).")

    def run_defaults(self, order: int = 1) -> dict[str, Any]:
        """The defaults of ``smetool verify NAME --order ORDER``: ``lrs``, ``horizon``,
        ``n_paths``, ``steps_per_lr``, ``method``."""
        base = {"lrs": self.lrs, "horizon": self.horizon, "n_paths": self.n_paths,
                "steps_per_lr": self.steps_per_lr, "method": self.method}
        return {**base, **self.order_defaults.get(order, {})}

    def defaults(self) -> dict[str, Any]:
        """The declared default of every option."""
        return {o.name: o.default for o in self.options}

    def _values(self, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - {o.name for o in self.options})
        if unknown:
            known = ", ".join(o.name for o in self.options) or "none"
            raise TypeError(f"plug-in {self.name!r} has no option {unknown[0]!r} (its options: "
                            f"{known}).")
        return {**defaults, **options}

    def _call(self, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Algorithm:
        try:
            algorithm = make(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"plug-in {self.name!r}: {exc}") from exc
        except Exception as exc:  # a fault inside the plug-in: name it
            raise PluginBuildError(
                f"plug-in {self.name!r}: its factory raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(algorithm, Algorithm):
            raise PluginBuildError(
                f"plug-in {self.name!r}: its factory must return an smetool Algorithm; got "
                f"{type(algorithm).__name__}.")
        return algorithm

    def build_on(self, landscape: Any, theta0: Any, **options: Any) -> Algorithm:
        """The plug-in's update rule on another landscape (``analysis.on_landscape``), with the
        declared defaults and ``analysis.network_options`` for the options not given.

        Raises
        ------
        ValueError
            The plug-in declares no rule for other landscapes.
        TypeError, PluginBuildError
            As :meth:`build`.
        """
        if self.analysis is None or self.analysis.on_landscape is None:
            raise ValueError(f"plug-in {self.name!r} runs on its own problem only (it declares no "
                             "`analysis.on_landscape`).")
        values = self._values(options, {**self.defaults(), **self.analysis.network_options})
        return self._call(self.analysis.on_landscape, landscape, theta0, **values)

    def build_for_analysis(self, *, dtype: torch.dtype = torch.float64, device: Any = "cpu",
                           **options: Any) -> Algorithm:
        """The plug-in on the problem of its analyses (``analysis.factory``, or :attr:`factory`)."""
        make = self.factory if self.analysis is None or self.analysis.factory is None \
            else self.analysis.factory
        return self._call(make, dtype=dtype, device=device,
                          **self._values(options, self.defaults()))

    def build(self, *, dtype: torch.dtype = torch.float64, device: Any = "cpu",
              **options: Any) -> Algorithm:
        """The plug-in with the given options (the declared defaults for the others).

        Raises
        ------
        TypeError
            An option the plug-in does not declare.
        PluginBuildError
            The factory raised, or did not return an :class:`Algorithm`; the message names the
            plug-in.
        """
        return self._call(self.factory, dtype=dtype, device=device,
                          **self._values(options, self.defaults()))


def _check_coarsest_grid(lrs: tuple[float, ...], horizon: float, steps_per_lr: int, owner: str,
                         where: str) -> None:
    """The defaults must let :func:`smetool.verify` extrapolate the SME from steps ``h, 2h, 4h``:
    ``horizon / lr · steps_per_lr`` a multiple of 4 at every learning rate."""
    for lr in lrs:
        n = round(horizon / lr) * steps_per_lr
        if n % 4:
            raise ValueError(
                f"{owner}: {where}horizon/lr · steps_per_lr must be a multiple of 4 (the SME is "
                f"extrapolated from steps h, 2h, 4h); got {round(horizon / lr)} · {steps_per_lr} "
                f"= {n} at lr={lr:g}.")
