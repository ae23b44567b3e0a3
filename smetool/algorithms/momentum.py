"""The heavy-ball momentum plug-in: mini-batch SGD with momentum and its order-1 SME.

Scaling (stated once, used everywhere here). The plug-in's step size ``ε`` (the ``lr`` of the
:class:`~smetool.algorithms.Algorithm` contract) drives the state ``z = (x, v)`` by

    ``v_{k+1} = (1 − λε) v_k − ε ∇f_{γ_k}(x_k)``,   ``x_{k+1} = x_k + ε v_{k+1}``.

With ``w = ε v`` this is the usual heavy ball ``w_{k+1} = μ w_k − η ∇f_γ(x_k)``,
``x_{k+1} = x_k + w_{k+1}`` with learning rate ``η = ε²`` and momentum ``μ = 1 − λ√η``: the
momentum must approach 1 as ``1 − O(√η)`` for a non-trivial limit, and ``√η`` is the time step
(Li, Tai & E's scaling for momentum SGD). The SME, in time ``t = k ε``, is

    ``dX = V dt``,   ``dV = −(λ V + ∇f(X)) dt + √ε Σ(X)^{1/2} dW``,

a weak approximation of order 1 in ``ε``; ``Σ`` is the mini-batch gradient covariance of the
base problem, used in its factored form (GENERAL noise, ``M = n``). For fixed ``μ < 1`` as
``η → 0`` the momentum dynamics collapse onto SGD with learning rate ``η/(1 − μ)`` instead
(Kovachki & Stuart 2021); that regime is the plain SGD plug-in.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019) (SMEs of momentum SGD).
B. T. Polyak, "Some methods of speeding up the convergence of iteration methods", USSR Comput.
Math. Math. Phys. 4 (1964) (the heavy-ball method).
N. B. Kovachki, A. M. Stuart, "Continuous time analysis of momentum methods", JMLR 22 (2021).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019, Reference
from ..checks import check_lr, check_positive
from ..exact import HeavyBallMoments
from ..sde import SDE, NoiseKind
from .base import (
    Algorithm,
    HasExactMoments,
    SeparableNoise,
    TestFunction,
    on_leading_block,
    wrapped_references,
)
from .sgd import FiniteSumSGD, SGDLeastSquares
from .spec import Option, PluginSpec, positive_option

__all__ = ["HeavyBallSGD", "HeavyBallSME", "PLUGINS"]

class HeavyBallSGD(SeparableNoise, Algorithm):
    """Heavy-ball mini-batch SGD on a :class:`~smetool.algorithms.sgd.FiniteSumSGD` problem.

    The state of a path is ``z = (x, v)``, shape ``(P, 2D)``; see the module docstring for the
    scaling (``lr = ε = √η``, momentum ``μ = 1 − λ ε``).

    Parameters
    ----------
    base : FiniteSumSGD
        The finite-sum problem and its mini-batch sampling (e.g. :class:`SGDLeastSquares`); its
        ``x0`` is the initial position.
    damping : float
        ``λ > 0``. A step needs ``λ · lr < 1`` (momentum ``μ`` in ``(0, 1)``).
    v0 : Tensor, (D,), optional
        Initial velocity (default 0).

    Raises
    ------
    TypeError
        If ``base`` is not a :class:`FiniteSumSGD`.
    ValueError
        A non-positive ``damping``, a ``v0`` of the wrong shape or not finite.

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I: mathematical foundations", JMLR 20(40), 2019 (SMEs of momentum SGD).

    Examples
    --------
    >>> algo = HeavyBallSGD.default()
    >>> z = algo.step(algo.initial_state(4), 0.1, torch.Generator().manual_seed(0))
    >>> algo.sme(0.1).diffusion(0.0, z).shape
    torch.Size([4, 4, 6])
    """

    name = "momentum"
    references = (LI_TAI_E_2019,)
    sme_orders = (1,)

    def __init__(self, base: FiniteSumSGD, damping: float, v0: Any = None):
        if not isinstance(base, FiniteSumSGD):
            raise TypeError(f"HeavyBallSGD: `base` must be a FiniteSumSGD; got {type(base).__name__}.")
        damping = check_positive(damping, "damping", "HeavyBallSGD")
        D = base.dim
        v0 = torch.zeros_like(base.x0) if v0 is None else torch.as_tensor(v0).to(base.x0)
        if v0.shape != (D,) or not bool(torch.isfinite(v0).all()):
            raise ValueError(
                f"HeavyBallSGD: `v0` must be a finite tensor of shape ({D},)"
                f"; got shape {tuple(v0.shape)}.")
        self.base = base
        self.damping = float(damping)
        self.v0 = v0

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float64, *, damping: float = 1.0,
                device=None) -> HeavyBallSGD:
        """Heavy ball on :meth:`SGDLeastSquares.default` with ``λ = damping``, ``v0 = 0``."""
        return cls(SGDLeastSquares.default(dtype, device=device), damping)

    @property
    def dim(self) -> int:
        """``D`` of the position; the state has ``2D`` coordinates."""
        return self.base.dim

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        D = self.dim
        if z.ndim != 2 or z.shape[1] != 2 * D:
            raise ValueError(
                f"HeavyBallSGD: the state must have shape (paths, {2 * D})"
                f"; got {tuple(z.shape)}.")
        return z[:, :D], z[:, D:]

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``(x0, v0)`` on every path, ``(P, 2D)``."""
        x = self.base.initial_state(n_paths, dtype=dtype, device=device)
        return torch.cat([x, self.v0.to(x).expand_as(x)], dim=1)

    def _check_step(self, lr: float) -> float:
        lr = check_lr(lr, "HeavyBallSGD")
        if self.damping * lr >= 1:
            raise ValueError(
                f"HeavyBallSGD: `lr` must satisfy damping · lr < 1 (momentum in (0, 1)); got "
                f"lr={lr:g} with damping={self.damping:g}."
            )
        return lr

    def _advance(self, z: Tensor, lr: float, gradient: Tensor) -> Tensor:
        x, v = self._split(z)
        v = (1.0 - self.damping * lr) * v - lr * gradient
        return torch.cat([x + lr * v, v], dim=1)

    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Tensor:
        """The mini-batch indices of one step, ``(P, B)``."""
        return self.base.draw_gradient_noise(n_paths, generator, dtype=dtype, device=device)

    def step_with(self, z: Tensor, lr: float, noise: Tensor) -> Tensor:
        """``v ← (1 − λ lr) v − lr g``, ``x ← x + lr v`` with the mini-batch gradient of
        ``noise``."""
        lr = self._check_step(lr)
        return self._advance(z, lr, self.base.gradient_with(self._split(z)[0], noise))

    def mean_step(self, z: Tensor, lr: float) -> Tensor:
        """The step with the full gradient ``∇f`` (the mini-batch gradient's mean)."""
        lr = self._check_step(lr)
        return self._advance(z, lr, self.base.mean_gradient(self._split(z)[0]))

    def step_covariance(self, z: Tensor, lr: float) -> Tensor | None:
        """The noise ``n = −lr (g − ∇f)`` enters ``v`` as ``n`` and ``x`` as ``lr n``: with
        ``C = lr² Σ(x)`` the covariance is ``[[lr² C, lr C], [lr C, C]]``, ``(P, 2D, 2D)``."""
        sigma = self.base.gradient_covariance(self._split(z)[0])
        if sigma is None:
            return None
        C = lr * lr * sigma
        top = torch.cat([lr * lr * C, lr * C], dim=2)
        return torch.cat([top, torch.cat([lr * C, C], dim=2)], dim=1)

    def sme(self, lr: float, order: int = 1) -> HeavyBallSME:
        """The order-1 SME for step ``lr``; see :class:`HeavyBallSME`."""
        return HeavyBallSME(self, lr, order)

    def test_functions(self) -> dict[str, TestFunction]:
        """The base's test functions on the position, and ``"v_norm_sq"`` (``‖v‖²``)."""
        D = self.dim
        out = on_leading_block(self.base.test_functions(), D)
        out["v_norm_sq"] = lambda z: (z[:, D:] ** 2).sum(dim=1)
        return out

    def exact_moments(self) -> HeavyBallMoments:
        """:class:`~smetool.exact.HeavyBallMoments` when the base has exact moments.

        Raises
        ------
        TypeError
            When the base has none.
        """
        if not isinstance(self.base, HasExactMoments):
            raise TypeError(f"HeavyBallSGD: the base problem {self.base!r} has no exact moments.")
        return HeavyBallMoments(self.base.exact_moments(), self.damping)

    def cited_references(self) -> tuple[Reference, ...]:
        """This class's references and the base problem's."""
        return wrapped_references(self, self.base)

    def __repr__(self) -> str:
        return f"HeavyBallSGD({self.base!r}, damping={self.damping:g})"


class HeavyBallSME(SDE):
    """``dX = V dt``, ``dV = −(λV + ∇f(X)) dt + √lr F(X) dW`` (GENERAL noise, ``F Fᵀ = Σ``).

    Parameters
    ----------
    algorithm : HeavyBallSGD
    lr : float
        ``ε``, the step of the discrete algorithm (SDE time ``t = k ε``).
    order : {1}

    Raises
    ------
    ValueError
        Bad ``lr`` or an ``order`` other than 1.

    References
    ----------
    Q. Li, C. Tai, W. E, JMLR 20(40), 2019 (SMEs of momentum SGD).
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, algorithm: HeavyBallSGD, lr: float, order: int = 1):
        if not isinstance(algorithm, HeavyBallSGD):
            raise TypeError(
                f"HeavyBallSME: `algorithm` must be a HeavyBallSGD"
                f"; got {type(algorithm).__name__}.")
        self.lr = check_lr(lr, "HeavyBallSME")
        if isinstance(order, bool) or order != 1:
            raise ValueError(f"HeavyBallSME: `order` must be 1 (the only order provided); got {order!r}.")
        self.algorithm = algorithm
        self.order = 1
        self.noise_dim = algorithm.base.n_points

    def drift(self, t: float, z: Tensor) -> Tensor:
        x, v = self.algorithm._split(z)
        return torch.cat([v, -self.algorithm.damping * v - self.algorithm.base.gradient(x)], dim=1)

    def diffusion(self, t: float, z: Tensor) -> Tensor:
        x, _ = self.algorithm._split(z)
        F = math.sqrt(self.lr) * self.algorithm.base.noise_factor(x)
        return torch.cat([torch.zeros_like(F), F], dim=1)

    def diffusion_product(self, t: float, z: Tensor, dW: Tensor) -> Tensor:
        x, _ = self.algorithm._split(z)
        Fdw = math.sqrt(self.lr) * self.algorithm.base.noise_factor_matvec(x, dW)
        return torch.cat([torch.zeros_like(Fdw), Fdw], dim=1)

    def __repr__(self) -> str:
        return f"HeavyBallSME(damping={self.algorithm.damping:g}, lr={self.lr:g})"


def _factory(*, dtype: torch.dtype, device: Any, damping: float) -> HeavyBallSGD:
    return HeavyBallSGD.default(dtype, damping=damping, device=device)


PLUGINS = (
    PluginSpec(
        name="momentum",
        factory=_factory,
        description="heavy-ball SGD, step sqrt(lr), momentum 1 - sqrt(lr) (Li, Tai & E, 2019)",
        orders=(1,),
        lrs=(2.0**-3, 2.0**-4, 2.0**-5, 2.0**-6),
        horizon=1.0,
        n_paths=2_000,
        steps_per_lr=4,
        options=(Option("damping", positive_option("damping"), 1.0,
                        "momentum damping λ (momentum 1 − λ·lr)"),),
        algorithm=HeavyBallSGD,
        describe=lambda alg: {"problem": repr(alg)},
    ),
)
"""The ``momentum`` plug-in of the command line."""

