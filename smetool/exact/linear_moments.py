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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
from torch import Tensor

from ..checks import check_positive, check_sequence_of_times
from .moment_results import ExactWeakErrors, MomentPath, Quadratic, as_array, kron_embed, steps_at

__all__ = ["LinearMomentModel", "AffineGradientModel"]


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
        z0 = as_array(z0, "z0", 1, self._owner)
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
        lr = check_positive(lr, "lr", self._owner)
        times = check_sequence_of_times(times, self._owner)
        ks = steps_at(times, lr, self._owner)
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
        lr = check_positive(lr, "lr", self._owner)
        order = self._check_order(order)
        times = check_sequence_of_times(times, self._owner)
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
        lrs = tuple(check_positive(h, "lrs", self._owner) for h in lrs)
        if not lrs:
            raise ValueError(f"{self._owner}: `lrs` must hold at least one learning rate; got none.")
        times = check_sequence_of_times(times, self._owner)
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
                + kron_embed(C, second, S))

    def sme_generator(self, lr: float, order: int) -> np.ndarray:
        d, N = self.dim, self.dim + 1
        c = 0.0 if order == 1 else 0.5 * lr
        drift = np.zeros((N, N))
        drift[:d] = -(np.eye(d) + c * self.hessian) @ self.mean_operator
        E = np.eye(N, d)
        return (np.kron(drift, np.eye(N)) + np.kron(np.eye(N), drift)
                + lr * kron_embed(E, self.noise_operator, np.eye(N)))


# ---------------------------------------------------------------------------------- problems
