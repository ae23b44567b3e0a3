"""Probe a plug-in on two paths before the long loops, so that its faults are reported by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..algorithms.base import Algorithm, SeparableNoise
from ..brownian import GaussianIncrements
from ..integrate import checked_diffusion
from ..montecarlo import TestFunction, evaluate_test_functions
from ..sde import SDE, NoiseKind, shape_probe_drift
from ..solvers import Solver

__all__ = ["PluginError", "probe_plugin", "probe_control_variates"]


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


def probe_control_variates(algorithm: Algorithm, name: str, lr: float, dtype: torch.dtype,
                           device: torch.device) -> None:
    """Check the control-variate contract of a :class:`~smetool.algorithms.SeparableNoise`
    plug-in on two paths: ``step`` equals ``step_with`` on ``draw`` with the same generator
    state, ``mean_step`` and ``step_covariance`` have the right shapes.

    Raises
    ------
    ValueError
        A broken contract, naming the plug-in (the control variates would be biased).
    PluginError
        Any other exception raised by the plug-in's code.
    """
    if not isinstance(algorithm, SeparableNoise) or not algorithm.has_exact_mean():
        return
    where = f"{name} (lr={lr:g})"
    x0 = algorithm.initial_state(2, dtype=dtype, device=device)
    D = x0.shape[1]
    stepped = _call(where, "step(x, lr, generator)", algorithm.step, x0.clone(), lr,
                    torch.Generator(device=device).manual_seed(0))
    noise = _call(where, "draw(n, lr, generator)",
                  lambda: algorithm.draw(2, lr, torch.Generator(device=device).manual_seed(0),
                                         dtype=dtype, device=device))
    split = _call(where, "step_with(x, lr, noise)", algorithm.step_with, x0.clone(), lr, noise)
    if not isinstance(split, Tensor) or split.shape != stepped.shape \
            or not torch.allclose(split, stepped, rtol=1e-12, atol=0.0):
        raise ValueError(
            f"{where}: step_with(x, lr, draw(...)) must reproduce step(x, lr, generator) from the "
            "same generator state (the SeparableNoise contract); it does not.")
    mean = _call(where, "mean_step(x, lr)", algorithm.mean_step, x0.clone(), lr)
    if not isinstance(mean, Tensor) or tuple(mean.shape) != (2, D):
        raise ValueError(f"{where}: mean_step(x, lr) must return (2, {D}); got {_shape(mean)}.")
    cov = _call(where, "step_covariance(x, lr)", algorithm.step_covariance, x0.clone(), lr)
    if cov is not None and (not isinstance(cov, Tensor) or tuple(cov.shape) != (2, D, D)):
        raise ValueError(
            f"{where}: step_covariance(x, lr) must return None or (2, {D}, {D}); got {_shape(cov)}.")

