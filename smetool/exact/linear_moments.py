"""Exact first and second moments of linear stochastic training algorithms and of their SMEs.

When the objective is quadratic and the stochastic gradient is *affine in the state*,
``∇f_ξ(x) = H(ξ) x̃`` with ``x̃ = (x; 1)`` and a random matrix ``H(ξ)`` of shape ``(d, d + 1)``,
both sides of a weak-error comparison have exact moments:

* the discrete iterates satisfy ``z̃_{k+1} = G(ξ_k) z̃_k`` with i.i.d. random matrices, so the
  augmented second moment ``M̃_k = E z̃_k z̃_kᵀ`` (which holds the mean in its last column) follows
  the linear recursion ``vec M̃_{k+1} = 𝒢 vec M̃_k``, ``𝒢 = E[G ⊗ G]``;
* the SME ``dZ = D z̃ dt + √lr σ(Z) dW`` has a linear drift and a noise covariance ``Σ(z)``
  quadratic in ``z``, so ``E Σ(Z)`` is linear in ``M̃`` and ``vec M̃(t) = exp(t L) vec M̃(0)``
  (``scipy.linalg.expm``) with ``L = D ⊗ I + I ⊗ D + lr 𝒩``.

Hence ``E g`` is exact for every quadratic test function ``g`` (the loss, ``‖x‖²``, ``x_i``) and
every learning rate, and so is the weak error ``E g(z_k) − E g(Z_{k·lr})``: an order test with no
Monte Carlo. Three problems are provided:

* :class:`LeastSquaresSGDMoments` — mini-batch SGD (batch ``B``, with replacement) on
  ``f(x) = (1/n) Σ_i ½ (a_iᵀx − y_i)²``; ``H_i = [a_i a_iᵀ, −y_i a_i]``.
* :class:`LinearDropoutMoments` — full-batch dropout GD on the linear model
  ``f_θ(x) = Σ_r θ_r x_r`` whose input coordinates are dropped (keep probability ``p``, multipliers
  ``u_r = b_r / p``); ``H(u) = [D_u S D_u, −D_u b]`` and the mask moments are
  ``E Π u_{r_j} = p^{#distinct − #factors}``.
* :class:`HeavyBallMoments` — heavy-ball momentum on either of them, with its order-1 SME.
* :class:`SVAGMoments` — SVAG (two independent gradients per step, covariance amplified by
  ``l``, step ``η / l``) on either of them, against the order-1 SME at learning rate ``η``.

Vectors are flattened row-major: ``vec(G M Hᵀ) = (G ⊗ H) vec M``.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019) — the SMEs of SGD (orders 1 and 2) and of
momentum SGD. Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of
dropout algorithm", ICLR 2024 — the dropout SME.
"""

from __future__ import annotations

import abc
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

__all__ = [
    "Quadratic",
    "MomentPath",
    "ExactWeakErrors",
    "LinearMomentModel",
    "AffineGradientModel",
    "LeastSquaresSGDMoments",
    "LinearDropoutMoments",
    "HeavyBallMoments",
    "SVAGMoments",
]


# ------------------------------------------------------------------------------------ checks
def _array(value: Any, name: str, ndim: int, owner: str) -> np.ndarray:
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


def _positive(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{owner}: `{name}` must be a positive finite number; got {value!r}.")
    return float(value)


def _steps_at(times: Sequence[float], lr: float, owner: str) -> list[int]:
    """The step counts ``k = t / lr`` of the save times (which must be multiples of ``lr``)."""
    out = []
    for t in times:
        k = round(t / lr)
        if k < 0 or abs(k * lr - t) > 1e-9 * max(1.0, abs(t)):
            raise ValueError(
                f"{owner}: every time must be a whole number of steps k·lr; got t={t:g} with "
                f"lr={lr:g} ({t / lr:.6g} steps)."
            )
        out.append(k)
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"{owner}: `times` must be strictly increasing; got {list(times)}.")
    return out


def _check_times(times: Any, owner: str) -> tuple[float, ...]:
    if isinstance(times, numbers.Real):
        times = (times,)
    try:
        values = tuple(float(t) for t in times)
    except TypeError:
        raise ValueError(f"{owner}: `times` must be a number or a sequence of times; got {times!r}.") from None
    if not values or any(not (math.isfinite(t) and t >= 0) for t in values):
        raise ValueError(f"{owner}: `times` must be non-empty, finite and ≥ 0; got {list(values)}.")
    return values


# -------------------------------------------------------------------------------- test functions
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
    def coordinate(cls, dim: int, i: int) -> "Quadratic":
        """``g(z) = z_i``."""
        q = np.zeros(dim)
        q[i] = 1.0
        return cls(np.zeros((dim, dim)), q)

    @classmethod
    def squared_norm(cls, dim: int, indices: Sequence[int] | None = None) -> "Quadratic":
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
        """:func:`smetool.weak.fit_order` (exact mode: no standard errors) over ``lrs`` (default all)."""
        from ..weak import fit_order

        e = self.series(name, order, time_index)
        h = np.asarray(self.lrs)
        if lrs is not None:
            keep = np.array([any(math.isclose(x, l) for l in lrs) for x in h])
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


# ------------------------------------------------------------------------------------ the core
def _kron_embed(C: np.ndarray, KH: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``E[(C H S) ⊗ (C H S)] = (C ⊗ C) E[H ⊗ H] (S ⊗ S)`` for ``K_H = E[H ⊗ H]``."""
    return np.kron(C, C) @ KH @ np.kron(S, S)


class LinearMomentModel(abc.ABC):
    """A stochastic algorithm with exact moment recursions, and its SMEs with exact moment ODEs.

    Subclasses give the one-step operator ``𝒢`` and the SME generator ``L`` acting on the
    row-major flattened augmented second moment ``vec M̃``, ``M̃ = E z̃ z̃ᵀ``, ``z̃ = (z; 1)``.

    Attributes
    ----------
    state_dim : int
        ``s``, the dimension of ``z``.
    sme_orders : tuple of int
    """

    state_dim: int
    sme_orders: tuple[int, ...] = (1, 2)

    @abc.abstractmethod
    def step_operator(self, lr: float) -> np.ndarray:
        """``𝒢 = E[G ⊗ G]`` of one discrete step, ``((s+1)², (s+1)²)``."""

    @abc.abstractmethod
    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        """``L`` with ``d/dt vec M̃ = L vec M̃`` for the SME of ``order``, ``((s+1)², (s+1)²)``."""

    @abc.abstractmethod
    def test_functions(self) -> dict[str, Quadratic]:
        """Named quadratic test functions on the state."""

    # ------------------------------------------------------------------------------------
    @property
    def _owner(self) -> str:
        return type(self).__name__

    def _initial(self, z0: Any) -> np.ndarray:
        z0 = _array(z0, "z0", 1, self._owner)
        if z0.shape != (self.state_dim,):
            raise ValueError(f"{self._owner}: `z0` must have shape ({self.state_dim},); got {z0.shape}.")
        zt = np.append(z0, 1.0)
        return np.outer(zt, zt).reshape(-1)

    def _path(self, kind: str, lr: float, times: tuple[float, ...], vecs: list[np.ndarray]) -> MomentPath:
        N = self.state_dim + 1
        Ms = np.stack(vecs).reshape(-1, N, N)
        return MomentPath(kind, lr, np.asarray(times), Ms[:, :-1, -1].copy(), Ms[:, :-1, :-1].copy())

    def _check_order(self, order: Any) -> int:
        if isinstance(order, bool) or order not in self.sme_orders:
            raise ValueError(f"{self._owner}: `order` must be one of {self.sme_orders}; got {order!r}.")
        return int(order)

    def discrete_moments(self, z0: Any, lr: float, times: float | Sequence[float]) -> MomentPath:
        """Exact ``E z_k`` and ``E z_k z_kᵀ`` of the discrete algorithm at ``t = k · lr``.

        Parameters
        ----------
        z0 : array-like, (s,)
            The deterministic initial state.
        lr : float
        times : float or sequence of float
            Save times, increasing multiples of ``lr``.

        Returns
        -------
        MomentPath

        Raises
        ------
        ValueError
            Bad ``z0``, ``lr`` or ``times`` (a time that is not a multiple of ``lr``).
        """
        lr = _positive(lr, "lr", self._owner)
        times = _check_times(times, self._owner)
        ks = _steps_at(times, lr, self._owner)
        op = self.step_operator(lr)
        vec, k_now, out = self._initial(z0), 0, []
        for k in ks:
            for _ in range(k - k_now):  # the exact recursion, one step at a time
                vec = op @ vec
            k_now = k
            out.append(vec)
        return self._path("discrete", lr, times, out)

    def sme_moments(self, z0: Any, lr: float, order: int, times: float | Sequence[float]) -> MomentPath:
        """Exact ``E Z_t`` and ``E Z_t Z_tᵀ`` of the SME of ``order`` (matrix exponential).

        Parameters
        ----------
        z0 : array-like, (s,)
        lr : float
            The learning rate the SME belongs to.
        order : int
            One of :attr:`sme_orders`.
        times : float or sequence of float
            Increasing, ≥ 0 (any real times).

        Returns
        -------
        MomentPath
        """
        lr = _positive(lr, "lr", self._owner)
        order = self._check_order(order)
        times = _check_times(times, self._owner)
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"{self._owner}: `times` must be strictly increasing; got {list(times)}.")
        L = self.sme_generator(lr, order)
        vec, t_now, out = self._initial(z0), 0.0, []
        for t in times:
            if t > t_now:
                vec = scipy.linalg.expm((t - t_now) * L) @ vec
            t_now = t
            out.append(vec)
        return self._path(f"sme{order}", lr, times, out)

    def weak_errors(
        self,
        z0: Any,
        lrs: Sequence[float],
        times: float | Sequence[float],
        *,
        orders: Sequence[int] | None = None,
        test_functions: Mapping[str, Quadratic] | None = None,
    ) -> ExactWeakErrors:
        """Exact weak errors ``E g(z_{t/lr}) − E g(Z_t)`` for every ``lr``, time, order and ``g``.

        Parameters
        ----------
        z0 : array-like, (s,)
        lrs : sequence of float
            Every time must be a multiple of every ``lr``.
        times : float or sequence of float
        orders : sequence of int, optional
            Default :attr:`sme_orders`.
        test_functions : dict of str to Quadratic, optional
            Default :meth:`test_functions`.

        Returns
        -------
        ExactWeakErrors
        """
        lrs = tuple(_positive(h, "lrs", self._owner) for h in lrs)
        if not lrs:
            raise ValueError(f"{self._owner}: `lrs` must hold at least one learning rate; got none.")
        times = _check_times(times, self._owner)
        orders = tuple(self._check_order(o) for o in (self.sme_orders if orders is None else orders))
        tests = dict(self.test_functions() if test_functions is None else test_functions)
        if not tests or not all(isinstance(g, Quadratic) for g in tests.values()):
            raise TypeError(f"{self._owner}: `test_functions` must map names to Quadratic objects.")
        names = tuple(tests)
        disc = np.empty((len(names), len(times), len(lrs)))
        sme = np.empty((len(orders), len(names), len(times), len(lrs)))
        for j, h in enumerate(lrs):
            dm = self.discrete_moments(z0, h, times)
            sm = [self.sme_moments(z0, h, o, times) for o in orders]
            for k, name in enumerate(names):
                disc[k, :, j] = dm.expectation(tests[name])
                for o, m in enumerate(sm):
                    sme[o, k, :, j] = m.expectation(tests[name])
        return ExactWeakErrors(names, lrs, times, orders, disc, sme, disc[None] - sme)


class AffineGradientModel(LinearMomentModel):
    """Gradient descent with a stochastic gradient ``H(ξ) x̃`` affine in ``x``, and its SMEs.

    The discrete step is ``x_{k+1} = x_k − lr H(ξ_k) x̃_k``; the expected objective ``f`` has
    gradient ``∇f(x) = H̄ x̃`` and Hessian ``A = H̄[:, :d]``; the gradient noise covariance is
    ``Σ(x) = E[H x̃ x̃ᵀ Hᵀ] − H̄ x̃ x̃ᵀ H̄ᵀ``. The SMEs (Li, Tai & E 2019):

    * order 1: ``dX = −∇f dt + √lr Σ^{1/2} dW``;
    * order 2: ``dX = −∇(f + (lr/4) ‖∇f‖²) dt + √lr Σ^{1/2} dW = −(I + (lr/2) A) ∇f dt + …``.

    Parameters
    ----------
    mean_operator : ndarray, (d, d + 1)
        ``H̄ = E H``.
    second_operator : ndarray, (d², (d + 1)²)
        ``E[H ⊗ H]`` (row-major: entry ``[(i, j), (k, l)] = E[H_ik H_jl]``).

    Raises
    ------
    ValueError
        If the operators' shapes do not fit together.
    """

    def __init__(self, mean_operator: np.ndarray, second_operator: np.ndarray):
        d = mean_operator.shape[0]
        if mean_operator.shape != (d, d + 1) or second_operator.shape != (d * d, (d + 1) ** 2):
            raise ValueError(
                f"{self._owner}: operators must have shapes (d, d+1) and (d², (d+1)²); got "
                f"{mean_operator.shape} and {second_operator.shape}."
            )
        self.dim = d
        self.state_dim = d
        self.mean_operator = mean_operator
        self.second_operator = second_operator

    @property
    def hessian(self) -> np.ndarray:
        """``A = ∇²f``, (d, d)."""
        return self.mean_operator[:, :-1]

    @property
    def gradient_offset(self) -> np.ndarray:
        """``b`` in ``∇f(x) = A x − b``, (d,)."""
        return -self.mean_operator[:, -1]

    @property
    def noise_operator(self) -> np.ndarray:
        """``E[H ⊗ H] − H̄ ⊗ H̄``: ``vec Σ(x) = 𝒩 vec(x̃ x̃ᵀ)``, ``(d², (d+1)²)``."""
        return self.second_operator - np.kron(self.mean_operator, self.mean_operator)

    def gradient_covariance(self, x: Any) -> np.ndarray:
        """The exact gradient-noise covariance ``Σ(x)``: ``(d,) -> (d, d)`` or ``(P, d) -> (P, d, d)``."""
        x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        xt = np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1)
        outer = np.einsum("...k,...l->...kl", xt, xt).reshape(x.shape[:-1] + (-1,))
        d = self.dim
        return (outer @ self.noise_operator.T).reshape(x.shape[:-1] + (d, d))

    def _embedding(self, lr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(G0, C, S)`` with ``G(ξ) = G0 − C H(ξ) S`` (here ``G0 = I``, ``C = lr [I; 0]``, ``S = I``)."""
        d, N = self.dim, self.dim + 1
        return np.eye(N), lr * np.eye(N, d), np.eye(N)

    def step_operator(self, lr: float, second_operator: np.ndarray | None = None) -> np.ndarray:
        """``𝒢`` of one step; ``second_operator`` replaces ``E[H ⊗ H]`` (e.g. amplified noise)."""
        G0, C, S = self._embedding(lr)
        Pbar = C @ self.mean_operator @ S
        second = self.second_operator if second_operator is None else second_operator
        return (np.kron(G0, G0) - np.kron(G0, Pbar) - np.kron(Pbar, G0)
                + _kron_embed(C, second, S))

    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        d, N = self.dim, self.dim + 1
        c = 0.0 if order == 1 else 0.5 * lr
        drift = np.zeros((N, N))
        drift[:d] = -(np.eye(d) + c * self.hessian) @ self.mean_operator
        E = np.eye(N, d)
        return (np.kron(drift, np.eye(N)) + np.kron(np.eye(N), drift)
                + lr * _kron_embed(E, self.noise_operator, np.eye(N)))


# ---------------------------------------------------------------------------------- problems
class LeastSquaresSGDMoments(AffineGradientModel):
    """Mini-batch SGD on finite-sum least squares: exact moments of SGD and of its SMEs.

    ``f(x) = (1/n) Σ_i f_i(x)``, ``f_i(x) = ½ (a_iᵀx − y_i)²``; one step averages ``B`` sample
    gradients drawn uniformly *with replacement*. With ``G_i = [I − lr a_i a_iᵀ, lr y_i a_i]`` and
    ``Ḡ = (1/n) Σ G_i``: ``E x_{k+1} = Ḡ E x̃_k`` and
    ``vec E x_{k+1}x_{k+1}ᵀ = [Ḡ⊗Ḡ + (1/B)((1/n) Σ G_i⊗G_i − Ḡ⊗Ḡ)] vec E x̃_k x̃_kᵀ``.
    The SME's ``E Σ(X)`` is the formula of the project's numerics notes (§2.4), here assembled as
    ``(1/B) [(1/n) Σ H_i ⊗ H_i − H̄ ⊗ H̄] vec M̃`` with ``H_i = [a_i a_iᵀ, −y_i a_i]``.

    Parameters
    ----------
    A : array-like, (n, d)
        Rows ``a_i``.
    y : array-like, (n,)
    batch_size : int
        ``B`` in ``[1, n]``.

    Raises
    ------
    ValueError
        Shapes, non-finite data, ``batch_size`` outside ``[1, n]``.

    Examples
    --------
    >>> import numpy as np
    >>> m = LeastSquaresSGDMoments(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), np.ones(3))
    >>> err = m.weak_errors([1.0, -1.0], [2**-6, 2**-7], 1.0)
    >>> float(err.ratios("f", 2)[0]) > 1.8
    True
    """

    def __init__(self, A: Any, y: Any, batch_size: int = 1):
        owner = type(self).__name__
        A = _array(A, "A", 2, owner)
        y = _array(y, "y", 1, owner)
        n, d = A.shape
        if y.shape != (n,):
            raise ValueError(f"{owner}: `y` must have shape ({n},) to match `A` {A.shape}; got {y.shape}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or not 1 <= batch_size <= n:
            raise ValueError(f"{owner}: `batch_size` must be an integer in [1, n] = [1, {n}]; got {batch_size!r}.")
        self.A, self.y, self.batch_size = A, y, int(batch_size)
        H = np.concatenate([np.einsum("ni,nj->nij", A, A), -(y[:, None] * A)[:, :, None]], axis=2)
        Hbar = H.mean(axis=0)
        per_sample = np.einsum("nik,njl->ijkl", H, H).reshape(d * d, (d + 1) ** 2) / n
        B = self.batch_size
        second = per_sample / B + (1.0 - 1.0 / B) * np.kron(Hbar, Hbar)
        super().__init__(Hbar, second)

    @property
    def loss(self) -> Quadratic:
        """``f(x) = ½ xᵀAx − bᵀx + (1/2n) Σ y_i²``."""
        return Quadratic(self.hessian.copy(), -self.gradient_offset, 0.5 * float(np.mean(self.y**2)))

    def test_functions(self) -> dict[str, Quadratic]:
        """``"f"`` (the loss), ``"norm_sq"`` (``‖x‖²``) and ``"x[i]"`` for every coordinate."""
        d = self.dim
        out = {"f": self.loss, "norm_sq": Quadratic.squared_norm(d)}
        out.update({f"x[{i}]": Quadratic.coordinate(d, i) for i in range(d)})
        return out

    def __repr__(self) -> str:
        n, d = self.A.shape
        return f"LeastSquaresSGDMoments(n={n}, d={d}, batch_size={self.batch_size})"


def _mask_moment_exponents(d: int) -> np.ndarray:
    """``#distinct − #factors`` of ``E[μ_ik μ_jl]`` for the dropout gradient's monomials.

    ``H(u)_ik = u_i S_ik u_k`` (``k < d``) or ``−u_i b_i`` (``k = d``), so each entry is one
    monomial in the independent multipliers ``u_r = b_r/p`` with ``E u_r^m = p^{1−m}`` (m ≥ 1):
    ``E Π_j u_{r_j} = p^{#distinct − #factors}``.
    """
    i, k, j, l = np.meshgrid(np.arange(d), np.arange(d + 1), np.arange(d), np.arange(d + 1),
                             indexing="ij")
    k = np.where(k < d, k, -1)  # the bias column carries a single factor u_i
    l = np.where(l < d, l, -1)
    present = 2 + (k >= 0) + (l >= 0)
    distinct = (1 + ((k >= 0) & (k != i)) + ((j != i) & (j != k))
                + ((l >= 0) & (l != i) & (l != k) & (l != j)))
    return (distinct - present).transpose(0, 2, 1, 3)  # -> [i, j, k, l]


class LinearDropoutMoments(AffineGradientModel):
    """Full-batch dropout GD on a linear model: exact moments of the iterates and of the SMEs.

    Model ``f_θ(x) = Σ_r θ_r x_r``; each input coordinate ``r`` is a "neuron" kept with
    probability ``p`` (**keep** probability) and scaled by ``1/p``: with ``u_r = b_r/p = 1 + η_r``
    the dropout loss is ``R_S^drop(θ; η) = (1/2n) Σ_i (Σ_r u_r θ_r x_ir − y_i)²`` and its gradient
    is ``H(u) θ̃ = D_u (S D_u θ − b)`` with ``S = XᵀX/n``, ``b = Xᵀy/n``. The expected loss is
    ``L_S(θ) = R_S(θ) + (v/2) Σ_r S_rr θ_r²``, ``v = (1−p)/p`` (the implicit regulariser), and
    ``Σ(θ) = Cov_u[H(u) θ̃]`` is quadratic in ``θ``. Mask moments are exact:
    ``E Π_j u_{r_j} = p^{#distinct − #factors}``.

    Parameters
    ----------
    X : array-like, (n, d)
    y : array-like, (n,)
    keep_prob : float
        ``p`` in ``(0, 1]``.

    References
    ----------
    Zhang, Li, Luo & Xu, ICLR 2024 (the dropout SME); Li, Tai & E, JMLR 2019 (order 2).
    """

    def __init__(self, X: Any, y: Any, keep_prob: float):
        owner = type(self).__name__
        X = _array(X, "X", 2, owner)
        y = _array(y, "y", 1, owner)
        n, d = X.shape
        if y.shape != (n,):
            raise ValueError(f"{owner}: `y` must have shape ({n},) to match `X` {X.shape}; got {y.shape}.")
        if isinstance(keep_prob, bool) or not isinstance(keep_prob, numbers.Real) \
                or not 0 < keep_prob <= 1:
            raise ValueError(f"{owner}: `keep_prob` must be in (0, 1]; got {keep_prob!r}.")
        self.X, self.y, self.keep_prob = X, y, float(keep_prob)
        S = X.T @ X / n
        b = X.T @ y / n
        coef = np.concatenate([S, -b[:, None]], axis=1)  # (d, d+1)
        weight = self.keep_prob ** _mask_moment_exponents(d)  # [i, j, k, l]
        second = np.einsum("ik,jl,ijkl->ijkl", coef, coef, weight).reshape(d * d, (d + 1) ** 2)
        mean_w = np.ones((d, d + 1))
        mean_w[np.arange(d), np.arange(d)] = 1.0 / self.keep_prob  # E u_r² = 1/p
        super().__init__(coef * mean_w, second)
        self._S, self._b = S, b

    @property
    def v(self) -> float:
        """``E η² = (1 − p)/p``."""
        return (1.0 - self.keep_prob) / self.keep_prob

    @property
    def training_loss(self) -> Quadratic:
        """``R_S(θ) = (1/2n) Σ_i (x_iᵀθ − y_i)²``."""
        return Quadratic(self._S.copy(), -self._b, 0.5 * float(np.mean(self.y**2)))

    @property
    def expected_loss(self) -> Quadratic:
        """``L_S(θ) = E_η R_S^drop(θ; η)``."""
        return Quadratic(self.hessian.copy(), -self._b, 0.5 * float(np.mean(self.y**2)))

    def test_functions(self) -> dict[str, Quadratic]:
        """``"R_S"``, ``"L_S"``, ``"norm_sq"`` and ``"theta[i]"`` for every coordinate."""
        d = self.dim
        out = {"R_S": self.training_loss, "L_S": self.expected_loss,
               "norm_sq": Quadratic.squared_norm(d)}
        out.update({f"theta[{i}]": Quadratic.coordinate(d, i) for i in range(d)})
        return out

    def step(self, theta: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One dropout GD step on a batch ``θ (P, d)``, a fresh mask per path (for Monte Carlo)."""
        # np.array: a writable copy (the stored data are read-only).
        X = torch.as_tensor(np.array(self.X), dtype=theta.dtype, device=theta.device)
        y = torch.as_tensor(np.array(self.y), dtype=theta.dtype, device=theta.device)
        keep = torch.rand(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
        u = (keep < self.keep_prob).to(theta.dtype) / self.keep_prob
        resid = (theta * u) @ X.T - y  # (P, n)
        return theta - lr * u * (resid @ X) / X.shape[0]

    def __repr__(self) -> str:
        n, d = self.X.shape
        return f"LinearDropoutMoments(n={n}, d={d}, keep_prob={self.keep_prob:g})"


class HeavyBallMoments(LinearMomentModel):
    """Heavy-ball momentum on an :class:`AffineGradientModel`: exact moments and the order-1 SME.

    State ``z = (x, v)``. With step ``ε = lr`` and damping ``λ`` the discrete algorithm is
    ``v_{k+1} = (1 − λε) v_k − ε ∇f_ξ(x_k)``, ``x_{k+1} = x_k + ε v_{k+1}`` — in the usual
    heavy-ball form (``w = ε v``: ``w_{k+1} = μ w_k − η ∇f_ξ(x_k)``, ``x_{k+1} = x_k + w_{k+1}``)
    that is learning rate ``η = ε²`` and momentum ``μ = 1 − λ √η``, the scaling in which the
    SME (Li, Tai & E 2019) has a limit:
    ``dX = V dt``, ``dV = −(λ V + ∇f(X)) dt + √ε Σ(X)^{1/2} dW``, weak order 1 in ``ε``.

    Parameters
    ----------
    base : AffineGradientModel
        The stochastic gradient (e.g. :class:`LeastSquaresSGDMoments`).
    damping : float
        ``λ > 0``.
    """

    sme_orders = (1,)

    def __init__(self, base: AffineGradientModel, damping: float):
        if not isinstance(base, AffineGradientModel):
            raise TypeError(f"HeavyBallMoments: `base` must be an AffineGradientModel; got {type(base).__name__}.")
        self.base = base
        self.damping = _positive(damping, "damping", "HeavyBallMoments")
        self.dim = base.dim
        self.state_dim = 2 * base.dim

    def _blocks(self) -> tuple[int, int, np.ndarray]:
        d, N = self.dim, 2 * self.dim + 1
        S = np.zeros((d + 1, N))  # z̃ -> x̃ = (x; 1)
        S[:d, :d] = np.eye(d)
        S[d, -1] = 1.0
        return d, N, S

    def step_operator(self, lr: float) -> np.ndarray:
        d, N, S = self._blocks()
        mu = 1.0 - self.damping * lr
        G0 = np.eye(N)
        G0[:d, d:2 * d] = lr * mu * np.eye(d)
        G0[d:2 * d, d:2 * d] = mu * np.eye(d)
        C = np.zeros((N, d))
        C[:d] = lr * lr * np.eye(d)
        C[d:2 * d] = lr * np.eye(d)
        Pbar = C @ self.base.mean_operator @ S
        return (np.kron(G0, G0) - np.kron(G0, Pbar) - np.kron(Pbar, G0)
                + _kron_embed(C, self.base.second_operator, S))

    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        d, N, S = self._blocks()
        drift = np.zeros((N, N))
        drift[:d, d:2 * d] = np.eye(d)
        drift[d:2 * d] = -self.base.mean_operator @ S
        drift[d:2 * d, d:2 * d] -= self.damping * np.eye(d)
        E = np.zeros((N, d))
        E[d:2 * d] = np.eye(d)
        return (np.kron(drift, np.eye(N)) + np.kron(np.eye(N), drift)
                + lr * _kron_embed(E, self.base.noise_operator, S))

    def test_functions(self) -> dict[str, Quadratic]:
        """The base's test functions on the ``x`` block, plus ``"v_norm_sq"``."""
        d, s = self.dim, self.state_dim
        out = {}
        for name, g in self.base.test_functions().items():
            Q = np.zeros((s, s))
            Q[:d, :d] = g.Q
            out[name] = Quadratic(Q, np.concatenate([g.q, np.zeros(d)]), g.c)
        out["v_norm_sq"] = Quadratic.squared_norm(s, range(d, s))
        return out

    def __repr__(self) -> str:
        return f"HeavyBallMoments({self.base!r}, damping={self.damping:g})"


class SVAGMoments(LinearMomentModel):
    """SVAG on an :class:`AffineGradientModel`: exact moments, against the base's order-1 SME.

    One SVAG step of size ``τ`` uses ``H_l = c₊ H(ξ₁) + c₋ H(ξ₂)`` (independent draws,
    ``c₊ + c₋ = 1``, ``c₊² + c₋² = l = η / τ``), so ``E H_l = H̄`` and
    ``E[H_l ⊗ H_l] = H̄ ⊗ H̄ + l (E[H ⊗ H] − H̄ ⊗ H̄)``: the base's step recursion with the noise
    operator amplified by ``l``. The SME it approaches is the base's order-1 SME at learning rate
    ``η`` for every ``τ``; the weak error is ``O(τ) = O(η / l)`` (Li, Malladi & Arora 2021).

    Parameters
    ----------
    base : AffineGradientModel
        E.g. :class:`LeastSquaresSGDMoments` or :class:`LinearDropoutMoments`.
    base_lr : float
        ``η``; the SVAG steps ``τ`` passed as ``lr`` must satisfy ``τ ≤ η``.

    References
    ----------
    Z. Li, S. Malladi, S. Arora, "On the validity of modeling SGD with stochastic differential
    equations (SDEs)", NeurIPS 2021.
    """

    sme_orders = (1,)

    def __init__(self, base: AffineGradientModel, base_lr: float):
        if not isinstance(base, AffineGradientModel):
            raise TypeError(f"SVAGMoments: `base` must be an AffineGradientModel; got {type(base).__name__}.")
        self.base = base
        self.base_lr = _positive(base_lr, "base_lr", "SVAGMoments")
        self.dim = base.dim
        self.state_dim = base.dim

    def amplification(self, lr: float) -> float:
        """``l = η / τ`` for the step ``τ = lr`` (``ValueError`` if ``l < 1``)."""
        from ..algorithms.svag import svag_amplification

        return svag_amplification(self.base_lr, lr, self._owner)

    def step_operator(self, lr: float) -> np.ndarray:
        base = self.base
        amplified = np.kron(base.mean_operator, base.mean_operator) \
            + self.amplification(lr) * base.noise_operator
        return base.step_operator(lr, amplified)

    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        self.amplification(lr)
        return self.base.sme_generator(self.base_lr, 1)

    def test_functions(self) -> dict[str, Quadratic]:
        """The base's test functions."""
        return self.base.test_functions()

    def __repr__(self) -> str:
        return f"SVAGMoments({self.base!r}, base_lr={self.base_lr:g})"
