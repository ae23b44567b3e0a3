"""The plug-ins the command line knows: an explicit name → factory table.

A plug-in written by a user does not need to be registered to be verified: pass the object to
:func:`smetool.verify`. Registration only makes it available as ``smetool verify NAME``; add a
:class:`PluginSpec` to :data:`PLUGINS` (or call :func:`register`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .base import Algorithm

__all__ = ["PluginSpec", "PLUGINS", "register"]


@dataclass(frozen=True)
class PluginSpec:
    """How the command line builds and runs a plug-in.

    Attributes
    ----------
    name : str
    factory : callable
        ``factory(*, dtype, device, **options) -> Algorithm``.
    description : str
        One line for ``smetool list``.
    orders : tuple of int
        SME orders available.
    lrs, horizon, n_paths, steps_per_lr
        Defaults of ``smetool verify NAME``, chosen so that the default run resolves every error
        point and finishes in a few minutes on two CPU cores.
    method : str
        The default SME solver (``smetool list`` names). Every built-in plug-in uses ``"heun"``:
        its error is measured on every run (the ``solver err`` column) and stays a small part of
        the weak error for the defaults, also for RMSprop/Adam, whose noise is not small, and for
        SVAG, whose SME does not shrink with the step; ``"platen"`` was measured about 24×
        slower on the SVAG default.
    options : tuple of str
        Plug-in specific command-line options the factory takes (e.g. ``keep_prob``).
    option_defaults : dict
        The value of each of ``options`` when the command line does not give it; the command
        line passes it to the factory, so what ``smetool verify --help`` shows is what runs.
    describe : callable
        ``describe(algorithm) -> dict`` for the JSON report.
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
    options: tuple[str, ...] = ()
    option_defaults: dict[str, Any] = field(default_factory=dict)
    describe: Callable[[Algorithm], dict[str, Any]] = field(default=lambda alg: {"repr": repr(alg)})


def _dropout_factory(*, dtype, device, **options) -> Algorithm:
    from .dropout import DropoutAlgorithm

    return DropoutAlgorithm.verification_default(dtype=dtype, device=device, **options)


def _sgd_factory(*, dtype, device, **options) -> Algorithm:
    from .sgd import SGDLeastSquares

    return SGDLeastSquares.default(dtype, device=device, **options)


def _momentum_factory(*, dtype, device, **options) -> Algorithm:
    from .momentum import HeavyBallSGD

    return HeavyBallSGD.default(dtype, device=device, **options)


def _svag_factory(*, dtype, device, **options) -> Algorithm:
    from .sgd import SGDLeastSquares
    from .svag import SVAG

    base_lr = options.pop("base_lr", 0.5)
    return SVAG(SGDLeastSquares.default(dtype, device=device, **options), base_lr)


def _svag_dropout_factory(*, dtype, device, **options) -> Algorithm:
    from .dropout import DropoutAlgorithm
    from .svag import SVAG

    base_lr = options.pop("base_lr", 0.04)
    return SVAG(DropoutAlgorithm.verification_default(dtype=dtype, device=device, **options), base_lr)


def _rmsprop_factory(*, dtype, device, **options) -> Algorithm:
    from .adaptive import RMSprop

    return RMSprop.default(dtype, device=device, **options)


def _adam_factory(*, dtype, device, **options) -> Algorithm:
    from .adaptive import Adam

    return Adam.default(dtype, device=device, **options)


PLUGINS: dict[str, PluginSpec] = {}


def register(spec: PluginSpec) -> None:
    """Make a plug-in available to ``smetool verify NAME`` (a name may be registered once)."""
    if not isinstance(spec, PluginSpec):
        raise TypeError(f"`spec` must be a PluginSpec; got {type(spec).__name__}.")
    missing = sorted(set(spec.options) - set(spec.option_defaults))
    if missing:
        raise ValueError(f"plug-in {spec.name!r}: `option_defaults` has no value for {missing}.")
    if spec.name in PLUGINS:
        raise ValueError(f"a plug-in named {spec.name!r} is already registered.")
    PLUGINS[spec.name] = spec


register(PluginSpec(
    name="dropout",
    factory=_dropout_factory,
    description="dropout GD on a two-layer tanh network (Zhang, Li, Luo & Xu, ICLR 2024)",
    orders=(1, 2),
    lrs=(0.04, 0.02, 0.01, 0.005),
    horizon=0.2,
    n_paths=10_000,
    steps_per_lr=2,
    options=("keep_prob", "width"),
    option_defaults={"keep_prob": 0.9, "width": 16},
    describe=lambda alg: {"problem": repr(alg.problem)},
))

register(PluginSpec(
    name="sgd",
    factory=_sgd_factory,
    description="minibatch SGD on a 6-point least-squares problem (Li, Tai & E, 2017/2019)",
    orders=(1, 2),
    lrs=(2.0**-3, 2.0**-4, 2.0**-5, 2.0**-6, 2.0**-7),
    horizon=1.0,
    n_paths=100_000,
    steps_per_lr=4,
    options=("batch_size",),
    option_defaults={"batch_size": 1},
    describe=lambda alg: {"problem": repr(alg)},
))

register(PluginSpec(
    name="momentum",
    factory=_momentum_factory,
    description="heavy-ball SGD, step sqrt(lr), momentum 1 - sqrt(lr) (Li, Tai & E, 2019)",
    orders=(1,),
    lrs=(2.0**-3, 2.0**-4, 2.0**-5, 2.0**-6),
    horizon=1.0,
    n_paths=50_000,
    steps_per_lr=4,
    describe=lambda alg: {"problem": repr(alg)},
))

register(PluginSpec(
    name="svag",
    factory=_svag_factory,
    description="SVAG (two amplified SGD gradients, step base_lr/l) on the least-squares problem, "
    "against the SGD SME at base_lr = 0.5 (Li, Malladi & Arora, 2021)",
    orders=(1,),
    lrs=(0.25, 0.125, 0.0625),
    horizon=1.0,
    n_paths=200_000,
    steps_per_lr=4,
    options=("base_lr", "batch_size"),
    option_defaults={"base_lr": 0.5, "batch_size": 1},
    describe=lambda alg: {"problem": repr(alg)},
))

register(PluginSpec(
    name="svag-dropout",
    factory=_svag_dropout_factory,
    description="SVAG with two dropout masks per step on the dropout problem, against the dropout "
    "SME at base_lr = 0.04 (Li, Malladi & Arora, 2021)",
    orders=(1,),
    lrs=(0.02, 0.01, 0.005),
    horizon=0.2,
    n_paths=10_000,
    steps_per_lr=2,
    options=("base_lr", "keep_prob", "width"),
    option_defaults={"base_lr": 0.04, "keep_prob": 0.9, "width": 16},
    describe=lambda alg: {"problem": repr(alg.base.problem), "base_lr": alg.base_lr},
))

register(PluginSpec(
    name="rmsprop",
    factory=_rmsprop_factory,
    description="RMSprop with noise scale sigma0/eta on least squares, step tau = eta^2 "
    "(Malladi, Lyu, Panigrahi & Arora, 2022)",
    orders=(1,),
    lrs=(1 / 8, 1 / 16, 1 / 32),
    horizon=1.0,
    n_paths=100_000,
    steps_per_lr=4,
    describe=lambda alg: {"problem": repr(alg)},
))

register(PluginSpec(
    name="adam",
    factory=_adam_factory,
    description="Adam (no bias correction) with noise scale sigma0/eta on least squares, step "
    "tau = eta^2 (Malladi, Lyu, Panigrahi & Arora, 2022)",
    orders=(1,),
    lrs=(1 / 8, 1 / 16, 1 / 32),
    horizon=1.0,
    n_paths=100_000,
    steps_per_lr=4,
    describe=lambda alg: {"problem": repr(alg)},
))
