"""The Adam plug-in: Adam (no bias correction) with large gradient noise and its SDE.

The noise model and the scaling are those of :mod:`smetool.algorithms.adaptive`; the SDE is that
of Malladi, Lyu, Panigrahi & Arora (2022).

References
----------
S. Malladi, K. Lyu, A. Panigrahi, S. Arora, "On the SDEs and scaling rules for adaptive gradient
algorithms", NeurIPS 2022. D. P. Kingma, J. Ba, "Adam: a method for stochastic optimization",
ICLR 2015.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import KINGMA_BA_2015, MALLADI_2022_ADAPTIVE
from ..brownian import Increments
from ..checks import check_lr, check_positive
from .adaptive import AdaptiveAlgorithm, AdaptiveSME, adaptive_spec
from .base import TestFunction
from .sgd import FiniteSumSGD

__all__ = ["Adam", "AdamSME", "PLUGINS"]


class Adam(AdaptiveAlgorithm):
    """Adam (without bias correction) on a finite-sum problem with large gradient noise, paired
    with its SDE.

    The state is ``z = (x, m, u)``, ``u = v / σ²``, shape ``(P, 3D)``; the step ``lr`` is the SDE
    time step ``τ = η²`` (see the module docstring).

    Parameters
    ----------
    base : FiniteSumSGD
    sigma0, eps0 : float
        As for :class:`RMSprop`.
    c1, c2 : float
        ``c_i = (1 − β_i)/η²``; a step needs ``c_i · lr < 1``.
    noise : {"gaussian", "rademacher"}
    m0 : Tensor, (D,), optional
        Initial first moment (default 0).
    u0 : Tensor, (D,), optional
        Initial ``u`` (default ``diag Σ(x0)``).

    Raises
    ------
    TypeError, ValueError
        As for :class:`RMSprop`; also a bad ``m0``.

    References
    ----------
    Malladi, Lyu, Panigrahi & Arora, NeurIPS 2022; Kingma & Ba, ICLR 2015.

    Examples
    --------
    >>> algo = Adam.default()
    >>> z = algo.step(algo.initial_state(4), 1 / 16, torch.Generator().manual_seed(0))
    >>> tuple(z.shape)
    (4, 6)
    """

    name = "adam"
    references = (MALLADI_2022_ADAPTIVE, KINGMA_BA_2015)
    n_blocks = 3

    def __init__(self, base: FiniteSumSGD, *, sigma0: float = 0.5, eps0: float = 1.0,
                 c1: float = 2.0, c2: float = 1.0, noise: Increments | str = "gaussian", m0: Any = None,
                 u0: Any = None):
        super().__init__(base, sigma0=sigma0, eps0=eps0, noise=noise, u0=u0)
        self.c1 = check_positive(c1, "c1", "Adam")
        self.c2 = check_positive(c2, "c2", "Adam")
        D = base.dim
        m0 = torch.zeros_like(base.x0) if m0 is None else torch.as_tensor(m0).to(base.x0)
        if m0.shape != (D,) or not bool(torch.isfinite(m0).all()):
            raise ValueError(
                f"Adam: `m0` must be a finite tensor of shape ({D},)"
                f"; got shape {tuple(m0.shape)}.")
        self.m0 = m0

    @property
    def second_moment_rate(self) -> float:
        """``c2``."""
        return self.c2

    def hyperparameters(self, lr: float) -> dict[str, Any]:
        """``η = √τ``, ``(β₁, β₂)``, ``ε`` and the noise scale ``σ`` for ``τ = lr``."""
        lr = check_lr(lr, "Adam")
        eta = math.sqrt(lr)
        return {"lr": eta, "betas": (1.0 - self.c1 * lr, 1.0 - self.c2 * lr),
                "eps": self.eps0 / eta, "noise_scale": self.sigma0 / eta}

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``(x0, m0, u0)`` on every path, ``(P, 3D)``."""
        x = self.base.initial_state(n_paths, dtype=dtype, device=device)
        return torch.cat([x, self.m0.to(x).expand_as(x), self.u0.to(x).expand_as(x)], dim=1)

    def step_with(self, z: Tensor, lr: float, noise: Tensor) -> Tensor:
        """``m ← β₁ m + (1−β₁) g``, ``u ← β₂ u + (1−β₂)(g/σ)²``, ``x ← x − η m/(σ √u + ε)``."""
        lr = check_lr(lr, "Adam")
        self._check_rate(self.c1, lr, "c1")
        self._check_rate(self.c2, lr, "c2")
        x, m, u = self.split(z)
        s = self.scaled_gradient(x, lr, noise)  # g / σ; g = σ₀ s / η
        m = (1.0 - self.c1 * lr) * m + self.c1 * lr * (self.sigma0 / math.sqrt(lr)) * s
        u = (1.0 - self.c2 * lr) * u + self.c2 * lr * s * s
        x = x - lr * m / self.preconditioner(u)
        return torch.cat([x, m, u], dim=1)

    def sme(self, lr: float, order: int = 1) -> AdamSME:
        """The Adam SDE (the same for every ``lr``); see :class:`AdamSME`."""
        return AdamSME(self, lr, order)

    def test_functions(self) -> dict[str, TestFunction]:
        """As :class:`RMSprop`'s, plus ``"m_norm_sq"`` (``‖m‖²``)."""
        D = self.dim
        out = super().test_functions()
        out["m_norm_sq"] = lambda z: (z[:, D:2 * D] ** 2).sum(dim=1)
        return out

    def __repr__(self) -> str:
        return (f"Adam({self.base!r}, sigma0={self.sigma0:g}, eps0={self.eps0:g}, c1={self.c1:g}, "
                f"c2={self.c2:g}, noise={self.noise!r})")


class AdamSME(AdaptiveSME):
    """``dx = −P⁻¹ m dt``, ``dm = c₁(∇f − m) dt + σ₀ c₁ F dW``, ``du = c₂(diag Σ − u) dt``.

    GENERAL noise, ``M = n``; only the ``m`` rows of the diffusion are non-zero.

    Parameters
    ----------
    algorithm : Adam
    lr : float
        The time step ``τ`` of one Adam step; checked, not used (the SDE has no ``τ``).
    order : {1}

    References
    ----------
    Malladi, Lyu, Panigrahi & Arora, NeurIPS 2022: the SDE of Adam without bias correction.
    """

    algorithm_type = Adam
    algorithm: Adam

    def drift(self, t: float, z: Tensor) -> Tensor:
        alg = self.algorithm
        x, m, u = alg.split(z)
        return torch.cat([-m / alg.preconditioner(u), alg.c1 * (alg.base.gradient(x) - m),
                          alg.c2 * (alg.gradient_variance(x) - u)], dim=1)

    def diffusion(self, t: float, z: Tensor) -> Tensor:
        alg = self.algorithm
        x, _, _ = alg.split(z)
        return self._in_block(alg.sigma0 * alg.c1 * alg.base.noise_factor(x), 1)

    def diffusion_product(self, t: float, z: Tensor, dW: Tensor) -> Tensor:
        alg = self.algorithm
        x, _, _ = alg.split(z)
        return self._in_block(alg.sigma0 * alg.c1 * alg.base.noise_factor_matvec(x, dW), 1)

    def __repr__(self) -> str:
        return f"AdamSME({self.algorithm!r})"


PLUGINS = (
    adaptive_spec(Adam, description="Adam (no bias correction) with noise scale sigma0/eta on least "
                  "squares, step tau = eta^2 (Malladi, Lyu, Panigrahi & Arora, 2022)", n_paths=2_000,
                  references=(MALLADI_2022_ADAPTIVE, KINGMA_BA_2015)),
)
"""The ``adam`` plug-in of the command line."""
