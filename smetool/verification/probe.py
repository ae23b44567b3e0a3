"""Probe a plug-in on two paths before the long loops, so that its faults are reported by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..algorithms.base import Algorithm
from ..brownian import GaussianIncrements
from ..integrate import checked_diffusion
from ..montecarlo import TestFunction, evaluate_test_functions
from ..sde import SDE, NoiseKind, shape_probe_drift
from ..solvers import Solver

__all__ = ["PluginError", "probe_plugin"]


class PluginError(RuntimeError):
    """A plug-in raised an unexpected exception; the message names the plug-in and the call."""


def _call(where: str, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call plug-in code; ValueError and TypeError keep their type with the plug-in's name in
    front, anything else becomes a :class:`PluginError` (never a bare traceback from inside)."""
    try:
        return fn(*args)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    except Exception as exc:  # a fault of the plug-in: name it, keep the cause chained
        raise PluginError(f"{where}: {what} raised {type(exc).__name__}: {exc}") from exc


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def probe_plugin(algorithm: Algorithm, name: str, lr: float, order: int, solver: Solver,
                 tests: Mapping[str, TestFunction], dtype: torch.dtype,
                 device: torch.device) -> SDE:
    """Run every method a verification calls once, on two paths, and check what comes back.

    Checks the shapes of the initial state, one step, the SME's drift and diffusion (or sampled
    noise) and the test functions, and that the solver can take the SME's noise kind.

    Returns
    -------
    SDE
        The SME at ``lr``.

    Raises
    ------
    ValueError, TypeError
        A wrong shape or type, with the plug-in's name and the learning rate in front.
    PluginError
        Any other exception raised by the plug-in's code, naming it.
    UnsupportedError
        A solver that cannot take the SME's noise kind.
    """
    where = f"{name} (lr={lr:g})"
    x0 = _call(where, "initial_state(2)", lambda: algorithm.initial_state(2, dtype=dtype, device=device))
    if not isinstance(x0, Tensor) or x0.ndim != 2 or x0.shape[0] != 2 or not x0.is_floating_point():
        raise ValueError(
            f"{where}: initial_state(2) must return a floating-point (2, D) tensor; got {_shape(x0)}.")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{where}: initial_state holds NaN or inf.")
    D = x0.shape[1]
    gen = torch.Generator(device=device).manual_seed(0)
    x1 = _call(where, "step(x, lr, generator)", algorithm.step, x0.clone(), lr, gen)
    if not isinstance(x1, Tensor) or tuple(x1.shape) != (2, D):
        raise ValueError(
            f"{where}: step(x, lr, generator) must return the shape of x, (2, {D}); got {_shape(x1)}.")
    sde = _call(where, "sme(lr, order)", algorithm.sme, lr, order)
    if not isinstance(sde, SDE):
        raise TypeError(f"{where}: sme(lr, order) must return an smetool.SDE; got {type(sde).__name__}.")
    try:
        solver.check(sde, GaussianIncrements())
    except ValueError as exc:  # UnsupportedError included: keep its type, add the plug-in
        raise type(exc)(f"{where}: {exc}") from None
    drift = _call(where, "the SME's drift(t, x)", shape_probe_drift, sde, 0.0, x0)
    if not isinstance(drift, Tensor) or tuple(drift.shape) != (2, D):
        raise ValueError(
            f"{where}: the SME's drift(t, x) must have the shape of x, (2, {D}); got {_shape(drift)}.")
    if sde.noise_kind is NoiseKind.SAMPLED:
        zeta = _call(where, "the SME's sample_noise(t, x, generator)", sde.sample_noise, 0.0, x0,
                     torch.Generator(device=device).manual_seed(0))
        if not isinstance(zeta, Tensor) or tuple(zeta.shape) != (2, D):
            raise ValueError(
                f"{where}: sample_noise(t, x, generator) must return (2, {D}); got {_shape(zeta)}.")
    else:
        _call(where, "the SME's diffusion(t, x)", checked_diffusion, sde, 0.0, x0)
    _call(where, "the test functions", evaluate_test_functions, tests, x0.unsqueeze(0))
    return sde
