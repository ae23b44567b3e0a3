"""The named problems of ``smetool convergence PROBLEM``: every problem of
:mod:`smetool.exact.sde_problems`, and the two of the validation page's solver section in the same
form (geometric Brownian motion, and the non-commutative problem of Debrabant & Rößler whose first
component has an exact value on the Brownian path).

A problem is built by name with keyword parameters (:func:`library_problem`); the parameters and
their defaults are those of its factory's signature (:func:`problem_parameters`), so the command
line's ``--set NAME=VALUE`` is checked against them before anything runs.

References
----------
P. E. Kloeden, E. Platen, *Numerical Solution of SDEs*, Springer 1992, (4.4.6) (GBM).
K. Debrabant, A. Rößler, Appl. Numer. Math. 59 (2009), arXiv:1303.5103 (the non-commutative
problem).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .sde_problems import (
    LibraryProblem,
    Observable,
    additive_problem,
    rotation_problem,
    sciml_additive,
    sciml_additive_system,
    sciml_cubic,
    sciml_linear,
    sciml_linear_2d,
    sciml_wave,
    time_changed_noncommutative,
    time_dependent_gbm,
)
from .sde_references import NONCOMMUTATIVE_A, NONCOMMUTATIVE_B, linear_sde, linear_sde_moment_tensor

__all__ = ["gbm", "noncommutative", "PROBLEMS", "library_problem", "problem_parameters"]


def gbm(mu: float = 1.0, sigma: float = 0.5, x0: float = 1.0, T: float = 1.0) -> LibraryProblem:
    """Scalar geometric Brownian motion ``dX = μX dt + σX dW`` (DIAGONAL noise) on ``[0, T]``.

    ``X_t = x0 exp((μ − σ²/2) t + σ W_t)``; observables ``x``, ``x^2``, ``x^3`` with
    ``E X_t^p = x0^p exp(pμt + ½p(p−1)σ²t)`` (Kloeden & Platen (4.4.6)).
    """
    base = time_dependent_gbm(mu, 0.0, sigma, 0.0, x0, T=T)
    return LibraryProblem(f"gbm(mu={float(mu):g}, sigma={float(sigma):g}, x0={float(x0):g})",
                          base.sde, base.x0, base.t_span, base.noise_dim, base.observables,
                          base.solution, base.structure, False,
                          "Kloeden & Platen (1992), (4.4.6)")


def _moment(idx: tuple[int, ...], t: float) -> float:
    return float(linear_sde_moment_tensor(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B, (1.0, 1.0), t,
                                          len(idx))[idx])


def _first_component(power: int, t: float, W: Tensor) -> Tensor:
    # X_1 solves dX_1 = a X_1 dt + X_1 (b_1 dW^1 + b_2 dW^2) alone: a geometric Brownian motion.
    a, b1, b2 = NONCOMMUTATIVE_A[0, 0], NONCOMMUTATIVE_B[0][0, 0], NONCOMMUTATIVE_B[1][0, 0]
    rate = (a - (b1 * b1 + b2 * b2) / 2) * float(t)
    return torch.exp(power * (rate + b1 * W[..., 0] + b2 * W[..., 1]))


def _product(idx: tuple[int, ...], x: Tensor) -> Tensor:
    return torch.prod(x[..., list(idx)], dim=-1)


def noncommutative(T: float = 1.0) -> LibraryProblem:
    """The 2-d linear SDE with two non-commuting noise terms (GENERAL noise) of Debrabant &
    Rößler, ``X_0 = (1, 1)`` on ``[0, T]``; every polynomial moment from
    :func:`~smetool.exact.linear_sde_moment_tensor` (``E X_1² = e^{−t}``).

    No full solution exists, but ``X_1`` alone is a geometric Brownian motion, so ``x1`` and
    ``x1^2`` have exact values on the Brownian path (:attr:`Observable.on_path`): the control
    variate of the validation page's rows on this problem.
    """
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"`T` must be a positive finite number; got {T!r}.")
    names = {"x1": (0,), "x2": (1,), "x1^2": (0, 0), "x1*x2": (0, 1), "x2^2": (1, 1)}
    on_path = {"x1": functools.partial(_first_component, 1),
               "x1^2": functools.partial(_first_component, 2)}
    observables = tuple(
        Observable(name, functools.partial(_product, idx), functools.partial(_moment, idx),
                   on_path.get(name))
        for name, idx in names.items())
    return LibraryProblem(
        "noncommutative", linear_sde(NONCOMMUTATIVE_A, NONCOMMUTATIVE_B), (1.0, 1.0),
        (0.0, float(T)), 2, observables, None, "linear", False,
        "Debrabant & Rößler (2009), arXiv:1303.5103")


PROBLEMS: dict[str, Callable[..., LibraryProblem]] = {
    "gbm": gbm,
    "noncommutative": noncommutative,
    "sciml_linear": sciml_linear,
    "sciml_linear_2d": sciml_linear_2d,
    "sciml_cubic": sciml_cubic,
    "sciml_wave": sciml_wave,
    "sciml_additive": sciml_additive,
    "sciml_additive_system": sciml_additive_system,
    "additive": additive_problem,
    "time_dependent_gbm": time_dependent_gbm,
    "rotation": rotation_problem,
    "time_changed_noncommutative": time_changed_noncommutative,
}
"""Problem name → factory (keyword parameters with defaults)."""


def problem_parameters(name: str) -> dict[str, Any]:
    """The keyword parameters of the problem ``name`` with their defaults."""
    factory = _factory(name)
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def _factory(name: str) -> Callable[..., LibraryProblem]:
    if name not in PROBLEMS:
        raise ValueError(f"`problem` must be one of {', '.join(PROBLEMS)}; got {name!r}.")
    return PROBLEMS[name]


def library_problem(name: str, **params: Any) -> LibraryProblem:
    """Build the problem ``name`` with ``params`` (unknown names are refused with the list).

    Raises
    ------
    ValueError
        An unknown problem or parameter, or a parameter value its factory refuses.

    Examples
    --------
    >>> library_problem("gbm", mu=1.5, sigma=0.2).name
    'gbm(mu=1.5, sigma=0.2, x0=1)'
    """
    known = problem_parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"problem {name!r} has no parameter {unknown[0]!r}; its parameters are "
                         f"{', '.join(f'{k}={v!r}' for k, v in known.items()) or 'none'}.")
    return _factory(name)(**params)
