"""The results of :func:`~smetool.weak_error`: exact references and weak-error tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..jsonutil import json_safe
from ..stats import OrderFit, fit_order

__all__ = ["ExactReference", "WeakErrorTable"]


class ExactReference:
    """Exact expectations ``E g(X_t)`` used as the reference of :func:`weak_error` (zero SE).

    Parameters
    ----------
    expectations : mapping or callable
        ``{name: value}`` with a scalar (the same at every save time) or one value per save time,
        or a callable ``step -> {name: value}`` when the reference depends on the step (e.g. the
        exact moments of the discrete scheme).

    Examples
    --------
    >>> import math
    >>> ref = ExactReference({"x": [1.0, math.exp(-1.0)]})   # E X_t of dX = -X dt at t = 0, 1
    """

    def __init__(self, expectations: Mapping[str, Any] | Callable[[float], Mapping[str, Any]]):
        if not (isinstance(expectations, Mapping) or callable(expectations)):
            raise TypeError(
                "`expectations` must be a dict {name: value(s)} or a callable step -> dict; got "
                f"{type(expectations).__name__}."
            )
        self.expectations = expectations

    def values(self, step: float, names: Sequence[str], S: int) -> Tensor:
        """The expectations at ``step`` as float64 ``(K, S)``, checked against ``names``."""
        table = self.expectations(step) if callable(self.expectations) else self.expectations
        if not isinstance(table, Mapping) or set(table) != set(names):
            got = sorted(table) if isinstance(table, Mapping) else type(table).__name__
            raise ValueError(
                f"the exact reference must give one entry per test function {sorted(names)}; got "
                f"{got}."
            )
        rows = []
        for name in names:
            v = torch.as_tensor(table[name], dtype=torch.float64).reshape(-1)
            if v.numel() == 1:
                v = v.expand(S)
            if v.numel() != S:
                raise ValueError(
                    f"the exact reference for {name!r} must be a scalar or have one value per "
                    f"save time ({S}); got {v.numel()} values."
                )
            rows.append(v)
        return torch.stack(rows)

    def __repr__(self) -> str:
        return f"ExactReference({self.expectations!r})"


@dataclass(frozen=True)
class WeakErrorTable:
    """Weak errors ``E g(approx_h) − E g(ref)`` per test function, save time and step.

    Attributes
    ----------
    names : tuple of str, (K,)
    times : tuple of float, (S,)
    steps : tuple of float, (L,)
        In the order given.
    errors, stderrs : Tensor, (K, S, L), float64
        The estimated errors and their standard errors: from the paired per-path differences with
        common random numbers, otherwise ``mean_a − mean_r`` with ``SE = hypot(SE_a, SE_r)`` (the
        two sides are independent).
    approx_means, approx_stderrs, reference_means, reference_stderrs : Tensor, (K, S, L)
        The two means (reference standard errors are 0 for an :class:`ExactReference`).
    count : int
        Samples per step (antithetic pairs when ``antithetic``).
    seed : int
    common_random_numbers, antithetic, exact_reference : bool
    variance_reduction : Tensor, (K, S, L)
        Variance of the error estimate that independent sampling with the same number of simulated
        paths would give, divided by the variance achieved (1 without CRN or antithetic pairs).
        Estimated from the same run.
    crn_factor, antithetic_factor : Tensor (K, S, L) or None
        The two parts of ``variance_reduction``: ``(Var g_a + Var g_r) / Var(g_a − g_r)`` per path,
        and ``Var(single difference) / (2 Var(pair-averaged difference))``.
    reference_solver_errors, reference_solver_stderrs : Tensor (K, S, L) or None
        When the reference returns coarse levels (:class:`~smetool.montecarlo.PathSample`): the
        finest level's own solver error ``E g(ref at h) − Σ_l w_l E g(ref at 2^l h)`` (the
        Richardson combination's estimate of ``E g(ref at h) − E g(exact ref)``) on coupled
        paths, and its standard error. When the reference extrapolates, this is the error
        removed from its estimate.
    control_variate_factor : Tensor (K, S, L) or None
        When a side returns a tangent (:class:`~smetool.montecarlo.control.TangentPaths`): the
        variance of the plain error estimate divided by that of the estimate with the control
        variates subtracted (the estimates above are the latter), from the same run.
    controls : dict of str to WeakErrorTable
        Negative controls: the same approximation paths against other references run on the
        reference's random numbers (``weak_error(..., controls=)``), one table each.
    device : dict
        :func:`~smetool.device.device_info` of the run: device type, GPU model, torch and CUDA
        versions, and the float32 matmul precision the chunks ran with (TF32 off).
    labels : (str, str)
        Names of the two sides (``("approximation", "reference")``; ``verify`` uses
        ``("discrete", "SME")``).
    step_name : str
        What a step is (``"h"``, ``"lr"``).
    """

    names: tuple[str, ...]
    times: tuple[float, ...]
    steps: tuple[float, ...]
    errors: Tensor
    stderrs: Tensor
    approx_means: Tensor
    approx_stderrs: Tensor
    reference_means: Tensor
    reference_stderrs: Tensor
    count: int
    seed: int
    common_random_numbers: bool
    antithetic: bool
    exact_reference: bool
    variance_reduction: Tensor
    crn_factor: Tensor | None = None
    antithetic_factor: Tensor | None = None
    reference_solver_errors: Tensor | None = field(default=None, repr=False)
    reference_solver_stderrs: Tensor | None = field(default=None, repr=False)
    labels: tuple[str, str] = ("approximation", "reference")
    step_name: str = "h"
    control_variate_factor: Tensor | None = field(default=None, repr=False)
    controls: dict[str, WeakErrorTable] = field(default_factory=dict, repr=False)
    device: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def snr(self) -> Tensor:
        """``|error| / stderr``, (K, S, L)."""
        return self.errors.abs() / self.stderrs

    def index(self, name: str, time_index: int = -1) -> tuple[int, int]:
        """The ``(k, s)`` position of a test function and save time.

        Raises
        ------
        KeyError, IndexError
            An unknown name or a save-time index out of range.
        """
        if name not in self.names:
            raise KeyError(f"no test function {name!r}; the table has {list(self.names)}.")
        if not -len(self.times) <= time_index < len(self.times):
            S = len(self.times)
            raise IndexError(f"`time_index` must be in [-{S}, {S}); got {time_index}.")
        return self.names.index(name), time_index

    def series(self, name: str, time_index: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, errors, stderrs)`` of one test function at one save time, as numpy arrays."""
        k, s = self.index(name, time_index)
        return (np.asarray(self.steps), self.errors[k, s].numpy().copy(),
                self.stderrs[k, s].numpy().copy())

    def fit(self, name: str, time_index: int = -1, **kwargs: Any) -> OrderFit:
        """:func:`~smetool.fit_order` on one test function at one save time (default the last)."""
        return fit_order(*self.series(name, time_index), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (NaN → None); tensors become lists indexed ``[name][time][step]``."""
        out = dict(self.__dict__)
        out["controls"] = {name: table.to_dict() for name, table in self.controls.items()}
        return json_safe(out)

    def __repr__(self) -> str:
        mode = ", ".join(m for m, on in (("CRN", self.common_random_numbers),
                                          ("antithetic", self.antithetic),
                                          ("exact reference", self.exact_reference)) if on)
        lines = [f"WeakErrorTable(count={self.count}, seed={self.seed}{', ' + mode if mode else ''})"]
        for k, name in enumerate(self.names):
            for s, t in enumerate(self.times):
                lines.append(f"  {name} @ t={t:g}:")
                for j, h in enumerate(self.steps):
                    lines.append(
                        f"    {self.step_name}={h:<10.4g} error={self.errors[k, s, j]:+.4e} ± "
                        f"{self.stderrs[k, s, j]:.2e} (|e|/SE={self.snr[k, s, j]:.1f}, "
                        f"VR={self.variance_reduction[k, s, j]:.3g})"
                    )
        return "\n".join(lines)
