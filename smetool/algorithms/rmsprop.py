"""The RMSprop plug-in: RMSprop with large gradient noise and its SDE (Malladi et al. 2022).

The noise model and the scaling are those of :mod:`smetool.algorithms.adaptive`.

References
----------
S. Malladi, K. Lyu, A. Panigrahi, S. Arora, "On the SDEs and scaling rules for adaptive gradient
algorithms", NeurIPS 2022. T. Tieleman, G. Hinton, Lecture 6.5 (RMSprop), 2012.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import MALLADI_2022_ADAPTIVE
from ..brownian import Increments
from ..checks import check_lr, check_positive
from .adaptive import AdaptiveAlgorithm, AdaptiveSME, adaptive_spec
from .sgd import FiniteSumSGD

__all__ = ["RMSprop", "RMSpropSME", "PLUGINS"]


class RMSprop(AdaptiveAlgorithm):
    """RMSprop on a finite-sum problem with large gradient noise, paired with its SDE.

    The state is ``z = (x, u)``, ``u = v / σ²``, shape ``(P, 2D)``; the step ``lr`` is the SDE time
    step ``τ = η²`` (see the module docstring for the scaling).

    Parameters
    ----------
    base : FiniteSumSGD
        Gives ``∇f``, the noise factor ``F`` (``F Fᵀ = Σ``) and ``x0``.
    sigma0 : float
        ``σ₀ = σ η``.
    eps0 : float
        ``ε₀ = ε η > 0``.
    c : float
        ``c = (1 − β)/η²``; a step needs ``c · lr < 1``.
    noise : {"gaussian", "rademacher"}
        The law of ``z`` in ``ξ = F z``.
    u0 : Tensor, (D,), optional
        Initial ``u`` (default ``diag Σ(x0)``, where ``u`` would settle).

    Raises
    ------
    TypeError
        If ``base`` is not a :class:`FiniteSumSGD`.
    ValueError
        Non-positive constants, an unknown ``noise``, a bad ``u0``.

    References
    ----------
    Malladi, Lyu, Panigrahi & Arora, NeurIPS 2022.

    Examples
    --------
    >>> algo = RMSprop.default()
    >>> z = algo.step(algo.initial_state(4), 1 / 16, torch.Generator().manual_seed(0))
    >>> algo.hyperparameters(1 / 16)["lr"]
    0.25
    """

    name = "rmsprop"
    n_blocks = 2

    def __init__(self, base: FiniteSumSGD, *, sigma0: float = 0.5, eps0: float = 1.0,
                 c: float = 1.0, noise: Increments | str = "gaussian", u0: Any = None):
        super().__init__(base, sigma0=sigma0, eps0=eps0, noise=noise, u0=u0)
        self.c = check_positive(c, "c", "RMSprop")

    @property
    def second_moment_rate(self) -> float:
        """``c``."""
        return self.c

    def hyperparameters(self, lr: float) -> dict[str, float]:
        """The discrete algorithm's ``η = √τ``, ``β``, ``ε`` and noise scale ``σ`` for ``τ = lr``."""
        lr = check_lr(lr, "RMSprop")
        eta = math.sqrt(lr)
        return {"lr": eta, "beta": 1.0 - self.c * lr, "eps": self.eps0 / eta,
                "noise_scale": self.sigma0 / eta}

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``(x0, u0)`` on every path, ``(P, 2D)``."""
        x = self.base.initial_state(n_paths, dtype=dtype, device=device)
        return torch.cat([x, self.u0.to(x).expand_as(x)], dim=1)

    def step_with(self, z: Tensor, lr: float, noise: Tensor) -> Tensor:
        """``u ← β u + (1 − β) (g/σ)²``, ``x ← x − η g / (σ √u + ε)`` with ``τ = lr = η²``."""
        lr = check_lr(lr, "RMSprop")
        self._check_rate(self.c, lr, "c")
        x, u = self.split(z)
        s = self.scaled_gradient(x, lr, noise)  # η g / σ₀ = g / σ
        u = (1.0 - self.c * lr) * u + self.c * lr * s * s
        # η g / (σ √u + ε) = τ g / P = √τ σ₀ s / P
        x = x - math.sqrt(lr) * self.sigma0 * s / self.preconditioner(u)
        return torch.cat([x, u], dim=1)

    def sme(self, lr: float, order: int = 1) -> RMSpropSME:
        """The RMSprop SDE (the same for every ``lr``); see :class:`RMSpropSME`."""
        return RMSpropSME(self, lr, order)

    def __repr__(self) -> str:
        return (f"RMSprop({self.base!r}, sigma0={self.sigma0:g}, eps0={self.eps0:g}, c={self.c:g}, "
                f"noise={self.noise!r})")


class RMSpropSME(AdaptiveSME):
    """``dx = −P⁻¹(∇f dt + σ₀ F dW)``, ``du = c (diag Σ − u) dt``, ``P = σ₀ √u + ε₀``.

    GENERAL noise, ``M = n``; the ``u`` rows of the diffusion are zero.

    Parameters
    ----------
    algorithm : RMSprop
    lr : float
        ``τ``, only checked (the SDE does not depend on it).
    order : {1}

    References
    ----------
    S. Malladi, K. Lyu, A. Panigrahi, S. Arora, "On the SDEs and scaling rules for adaptive
    gradient algorithms", NeurIPS 2022 (the RMSprop SDE).
    """

    algorithm_type = RMSprop
    algorithm: RMSprop

    def drift(self, t: float, z: Tensor) -> Tensor:
        alg = self.algorithm
        x, u = alg.split(z)
        return torch.cat([-alg.base.gradient(x) / alg.preconditioner(u),
                          alg.c * (alg.gradient_variance(x) - u)], dim=1)

    def diffusion(self, t: float, z: Tensor) -> Tensor:
        alg = self.algorithm
        x, u = alg.split(z)
        F = -alg.sigma0 * alg.base.noise_factor(x) / alg.preconditioner(u).unsqueeze(-1)
        return self._in_block(F, 0)

    def diffusion_product(self, t: float, z: Tensor, dW: Tensor) -> Tensor:
        alg = self.algorithm
        x, u = alg.split(z)
        top = -alg.sigma0 * alg.base.noise_factor_matvec(x, dW) / alg.preconditioner(u)
        return self._in_block(top, 0)

    def __repr__(self) -> str:
        return f"RMSpropSME({self.algorithm!r})"


PLUGINS = (
    adaptive_spec(RMSprop, description="RMSprop with noise scale sigma0/eta on least squares, step "
                  "tau = eta^2 (Malladi, Lyu, Panigrahi & Arora, 2022)", n_paths=1_000,
                  references=(MALLADI_2022_ADAPTIVE,)),
)
"""The ``rmsprop`` plug-in of the command line."""
