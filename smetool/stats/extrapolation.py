"""Richardson (Talay–Tubaro) extrapolation of weak approximations, with standard errors.

If ``E g(Y^h) = E g(X) + c_p h^p + c_{p+1} h^{p+1} + …`` (Talay & Tubaro 1990 for Euler–Maruyama,
``p = 1``), then for steps ``h, r h, r² h, …`` the combination ``Σ_j w_j E g(Y^{r^j h})`` with

``Σ_j w_j = 1``,  ``Σ_j w_j (r^j)^{p+k} = 0`` for ``k = 0 … L−2``

removes the first ``L − 1`` error terms: the remaining error is ``O(h^{p+L−1})``. Two levels,
``p = 1``, ``r = 2``: ``2 E(h) − E(2h)``; three levels, ``p = 2``: Kloeden–Platen (15.3.4),
``(32 E(h) − 12 E(2h) + E(4h)) / 21``.

References
----------
D. Talay, L. Tubaro, "Expansion of the global error for numerical schemes solving stochastic
differential equations", Stoch. Anal. Appl. 8(4) (1990) 483–509. P. E. Kloeden, E. Platen,
*Numerical Solution of SDEs*, Springer 1992, §15.3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..jsonutil import json_safe

__all__ = ["Extrapolation", "richardson_weights", "richardson"]


@dataclass(frozen=True)
class Extrapolation:
    """An extrapolated expectation with its standard error.

    Attributes
    ----------
    value : Tensor, float64
        ``Σ_j w_j E_j``; the shape of one estimate (``(K, S)`` from
        :func:`richardson_monte_carlo`, ``()`` for scalars).
    stderr : Tensor or None
        From the weights and independent level errors (:func:`richardson`), or from the per-path
        combination of paired levels (:func:`richardson_monte_carlo`). ``None`` for exact inputs.
    weights : tuple of float, (L,)
        Finest step first.
    order : float
        Order of the remaining error, ``p + L − 1``.
    ratio : float
    steps : tuple of float or None
        Finest first, when known.
    paired : bool
        Whether ``stderr`` comes from paired per-path combinations.
    names, times : tuples or None
        Test functions and save times (Monte-Carlo runs).
    level_means, level_stderrs : Tensor (L, …) or None
        The per-level estimates (Monte-Carlo runs).
    independent_stderr : Tensor or None
        ``sqrt(Σ w_j² SE_j²)``: what independent levels with the same count would give; the
        variance-reduction factor of the pairing is ``(independent_stderr / stderr)²``.
    count : int or None
    """

    value: Tensor
    stderr: Tensor | None
    weights: tuple[float, ...]
    order: float
    ratio: float
    steps: tuple[float, ...] | None = None
    paired: bool = False
    names: tuple[str, ...] | None = None
    times: tuple[float, ...] | None = None
    level_means: Tensor | None = field(default=None, repr=False)
    level_stderrs: Tensor | None = field(default=None, repr=False)
    independent_stderr: Tensor | None = field(default=None, repr=False)
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON dictionary (tensors → lists, NaN/inf → None)."""
        return json_safe(dict(self.__dict__))

    def __repr__(self) -> str:
        w = ", ".join(f"{x:.6g}" for x in self.weights)
        if self.value.ndim == 0:
            v = f"value={float(self.value):.8g}"
            if self.stderr is not None:
                v += f" ± {float(self.stderr):.2g}"
        else:
            v = f"value shape={tuple(self.value.shape)}"
        return (f"Extrapolation({v}, weights=({w}), remaining order={self.order:g}, "
                f"paired={self.paired})")


def richardson_weights(levels: int, order: float = 1, ratio: float = 2) -> np.ndarray:
    """Weights ``w_0 … w_{L−1}`` (finest step first) that cancel ``L − 1`` error terms.

    Parameters
    ----------
    levels : int
        ``L ≥ 2``, the number of steps ``h, r h, …, r^{L−1} h``.
    order : float
        ``p``, the order of the leading error term of the scheme (weak order).
    ratio : float
        ``r > 1``.

    Returns
    -------
    numpy.ndarray, (L,)

    Raises
    ------
    ValueError
        ``levels < 2``, ``order ≤ 0`` or ``ratio ≤ 1``.

    Examples
    --------
    >>> (richardson_weights(3, order=2) * 21).round(10).tolist()
    [32.0, -12.0, 1.0]
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"`levels` must be an integer ≥ 2; got {levels!r}.")
    if not (isinstance(order, (int, float)) and math.isfinite(order) and order > 0):
        raise ValueError(f"`order` must be a positive number (the scheme's weak order); got {order!r}.")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 1):
        raise ValueError(f"`ratio` must be a number > 1; got {ratio!r}.")
    scale = float(ratio) ** np.arange(levels)
    rows = [np.ones(levels)] + [scale ** (order + k) for k in range(levels - 1)]
    rhs = np.zeros(levels)
    rhs[0] = 1.0
    return np.linalg.solve(np.array(rows), rhs)


def _stack(values: Sequence[Any], name: str) -> Tensor:
    try:
        tensors = [torch.as_tensor(v, dtype=torch.float64).cpu() for v in values]
        return torch.stack(tensors)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"`{name}` must hold numbers or arrays of one common shape ({exc}).") from None


def richardson(
    estimates: Mapping[float, Any] | Sequence[Any],
    stderrs: Mapping[float, Any] | Sequence[Any] | None = None,
    *,
    order: float = 1,
    ratio: float = 2,
) -> Extrapolation:
    """Extrapolate estimates at steps ``h, r h, r² h, …`` to ``h → 0``.

    Parameters
    ----------
    estimates : mapping step -> estimate, or sequence (finest step first)
        Scalars or arrays of one shape. A mapping's steps must form ``h, r h, …`` with
        ``r = ratio``.
    stderrs : same layout as ``estimates``, optional
        Standard errors of independent estimates; the result's is ``sqrt(Σ w_j² SE_j²)``. For
        levels sampled on shared paths use :func:`richardson_monte_carlo`, whose standard error
        comes from the per-path combination.
    order : float
        ``p``, the leading error order of the scheme (1 for Euler–Maruyama, 2 for Platen).
    ratio : float
        ``r > 1``.

    Returns
    -------
    Extrapolation

    Raises
    ------
    ValueError
        Fewer than two levels; steps that are not geometric with ``ratio``; ``stderrs`` that do
        not match ``estimates``; negative standard errors.

    Examples
    --------
    >>> round(float(richardson([1.0 + 0.1, 1.0 + 0.2]).value), 12)   # e(h) = h, h = 0.1
    1.0
    """
    steps = None
    if isinstance(estimates, Mapping):
        steps = tuple(sorted(float(h) for h in estimates))
        for j, h in enumerate(steps):
            if not math.isclose(h, steps[0] * float(ratio) ** j, rel_tol=1e-9):
                raise ValueError(
                    f"the steps of `estimates` must be h, {ratio:g}·h, {ratio:g}²·h, … (ratio={ratio:g});"
                    f" got {list(steps)}."
                )
        by_step = {float(h): v for h, v in estimates.items()}
        values = [by_step[h] for h in steps]
        if stderrs is not None:
            if not isinstance(stderrs, Mapping) or sorted(float(h) for h in stderrs) != list(steps):
                raise ValueError("`stderrs` must be a mapping with the same steps as `estimates`.")
            se_by = {float(h): v for h, v in stderrs.items()}
            stderrs = [se_by[h] for h in steps]
    else:
        values = list(estimates)
    weights = richardson_weights(len(values), order, ratio)
    E = _stack(values, "estimates")
    w = torch.as_tensor(weights, dtype=torch.float64).reshape((-1,) + (1,) * (E.ndim - 1))
    se = None
    if stderrs is not None:
        SE = _stack(list(stderrs), "stderrs")
        if SE.shape != E.shape:
            raise ValueError(
                f"`stderrs` must match `estimates` in shape; got {tuple(SE.shape)} and {tuple(E.shape)}."
            )
        if bool((SE < 0).any()):
            raise ValueError("`stderrs` must be non-negative.")
        se = ((w * SE) ** 2).sum(0).sqrt()
    return Extrapolation(
        value=(w * E).sum(0), stderr=se, weights=tuple(float(x) for x in weights),
        order=float(order) + len(values) - 1, ratio=float(ratio), steps=steps,
    )
