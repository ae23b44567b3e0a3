"""Results of exact moment computations: quadratic test functions, moment paths, exact weak errors.

Shared by the exact-moment models of :mod:`smetool.exact.linear_moments` and its problems.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import whole_steps
from ..stats import fit_order

__all__ = ["Quadratic", "MomentPath", "ExactWeakErrors", "as_array", "steps_at", "kron_embed"]


def as_array(value: Any, name: str, ndim: int, owner: str) -> np.ndarray:
    """``value`` as a read-only finite float64 array of ``ndim`` dimensions.

    Raises
    ------
    TypeError, ValueError
        Not a real array, the wrong number of dimensions, NaN or inf.
    """
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: `{name}` must be a real array; got {type(value).__name__}.") from None
    if arr.ndim != ndim:
        raise ValueError(f"{owner}: `{name}` must be {ndim}-dimensional; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}: `{name}` must be finite; it holds NaN or inf.")
    arr.setflags(write=False)
    return arr


def steps_at(times: Sequence[float], lr: float, owner: str) -> list[int]:
    """The step counts ``k = t / lr`` of the save times (each a whole number of steps).

    Raises
    ------
    ValueError
        A time that is not a whole number of steps, or times that do not increase.
    """
    out = [whole_steps(t, lr, span_name="t", step_name="lr", owner=owner, allow_zero=True)
           for t in times]
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"{owner}: `times` must be strictly increasing; got {list(times)}.")
    return out


def kron_embed(C: np.ndarray, KH: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``E[(C H S) ⊗ (C H S)] = (C ⊗ C) E[H ⊗ H] (S ⊗ S)`` for ``K_H = E[H ⊗ H]``."""
    return np.kron(C, C) @ KH @ np.kron(S, S)


@dataclass(frozen=True, eq=False)
class Quadratic:
    """A quadratic test function ``g(z) = ½ zᵀ Q z + qᵀ z + c``.

    Its expectation needs only the first two moments: ``E g = ½ tr(Q E zzᵀ) + qᵀ E z + c``.

    Attributes
    ----------
    Q : ndarray, (s, s)
        Symmetric.
    q : ndarray, (s,)
    c : float
    """

    Q: np.ndarray
    q: np.ndarray
    c: float = 0.0

    @classmethod
    def coordinate(cls, dim: int, i: int) -> Quadratic:
        """``g(z) = z_i``."""
        q = np.zeros(dim)
        q[i] = 1.0
        return cls(np.zeros((dim, dim)), q)

    @classmethod
    def squared_norm(cls, dim: int, indices: Sequence[int] | None = None) -> Quadratic:
        """``g(z) = Σ_{i ∈ indices} z_i²`` (all coordinates by default)."""
        diag = np.zeros(dim)
        diag[list(range(dim)) if indices is None else list(indices)] = 2.0
        return cls(np.diag(diag), np.zeros(dim))

    def expectation(self, mean: np.ndarray, second: np.ndarray) -> np.ndarray:
        """``E g`` from ``E z`` ``(..., s)`` and ``E zzᵀ`` ``(..., s, s)``; shape ``(...)``."""
        return 0.5 * np.einsum("ij,...ij->...", self.Q, second) + mean @ self.q + self.c

    def __call__(self, z: Tensor) -> Tensor:
        """``g`` on a batch of states ``(P, s) -> (P,)`` (dtype and device follow ``z``)."""
        Q = torch.as_tensor(self.Q, dtype=z.dtype, device=z.device)
        q = torch.as_tensor(self.q, dtype=z.dtype, device=z.device)
        return 0.5 * torch.einsum("pi,ij,pj->p", z, Q, z) + z @ q + self.c

    def to_dict(self) -> dict[str, Any]:
        return {"Q": self.Q.tolist(), "q": self.q.tolist(), "c": float(self.c)}

    def __repr__(self) -> str:
        return f"Quadratic(dim={self.q.shape[0]}, c={self.c:g})"


# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True, eq=False)
class MomentPath:
    """Exact ``E z`` and ``E zzᵀ`` of a discrete algorithm or an SME at save times.

    Attributes
    ----------
    kind : str
        ``"discrete"`` or ``"sme1"``/``"sme2"``.
    lr : float
    times : ndarray, (S,)
    mean : ndarray, (S, s)
    second : ndarray, (S, s, s)
        Raw second moments ``E z zᵀ``.
    """

    kind: str
    lr: float
    times: np.ndarray
    mean: np.ndarray
    second: np.ndarray

    @property
    def covariance(self) -> np.ndarray:
        """``Cov z``, (S, s, s)."""
        return self.second - np.einsum("ti,tj->tij", self.mean, self.mean)

    def expectation(self, g: Quadratic) -> np.ndarray:
        """``E g(z_t)`` at every save time, (S,)."""
        return g.expectation(self.mean, self.second)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lr": self.lr, "times": self.times.tolist(),
                "mean": self.mean.tolist(), "second": self.second.tolist()}

    def __repr__(self) -> str:
        return (f"MomentPath(kind={self.kind!r}, lr={self.lr:g}, times={self.times.tolist()}, "
                f"dim={self.mean.shape[1]})")


@dataclass(frozen=True, eq=False)
class ExactWeakErrors:
    """Exact weak errors ``E g(z_{t/lr}) − E g(Z^{(order)}_t)`` of quadratic test functions.

    Attributes
    ----------
    names : tuple of str, (K,)
    lrs : tuple of float, (L,)
    times : tuple of float, (S,)
    orders : tuple of int, (O,)
    discrete : ndarray, (K, S, L)
        ``E g`` of the discrete algorithm.
    sme : ndarray, (O, K, S, L)
        ``E g`` of the SME of each order.
    errors : ndarray, (O, K, S, L)
        ``discrete − sme``.
    """

    names: tuple[str, ...]
    lrs: tuple[float, ...]
    times: tuple[float, ...]
    orders: tuple[int, ...]
    discrete: np.ndarray
    sme: np.ndarray
    errors: np.ndarray

    def _index(self, name: str, order: int, time_index: int) -> tuple[int, int, int]:
        if name not in self.names:
            raise KeyError(f"no test function {name!r}; there are {list(self.names)}.")
        if order not in self.orders:
            raise KeyError(f"no SME order {order!r}; there are {list(self.orders)}.")
        return self.orders.index(order), self.names.index(name), time_index

    def series(self, name: str, order: int, time_index: int = -1) -> np.ndarray:
        """The errors of one test function, SME order and save time, one per ``lr``, (L,)."""
        o, k, s = self._index(name, order, time_index)
        return self.errors[o, k, s].copy()

    def ratios(self, name: str, order: int, time_index: int = -1) -> np.ndarray:
        """Successive local slopes ``log(e_i/e_{i+1}) / log(lr_i/lr_{i+1})``, (L − 1,)."""
        e = np.abs(self.series(name, order, time_index))
        h = np.asarray(self.lrs)
        return np.log(e[:-1] / e[1:]) / np.log(h[:-1] / h[1:])

    def fit(self, name: str, order: int, time_index: int = -1, *, lrs: Sequence[float] | None = None,
            **kwargs: Any):
        """:func:`smetool.fit_order` (exact mode: no standard errors) over ``lrs`` (default all)."""
        e = self.series(name, order, time_index)
        h = np.asarray(self.lrs)
        if lrs is not None:
            keep = np.array([any(math.isclose(x, lr) for lr in lrs) for x in h])
            h, e = h[keep], e[keep]
        return fit_order(h, e, None, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "lrs": list(self.lrs), "times": list(self.times),
                "orders": list(self.orders), "discrete": self.discrete.tolist(),
                "sme": self.sme.tolist(), "errors": self.errors.tolist()}

    def __repr__(self) -> str:
        lines = [f"ExactWeakErrors(orders={list(self.orders)}, times={list(self.times)})"]
        for o, order in enumerate(self.orders):
            for k, name in enumerate(self.names):
                errs = ", ".join(f"{e:+.3e}" for e in self.errors[o, k, -1])
                lines.append(f"  SME-{order} {name} @ t={self.times[-1]:g}: {errs}")
        return "\n".join(lines)
