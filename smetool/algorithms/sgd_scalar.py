"""The ``sgd-scalar`` plug-in: SGD on a scalar random quadratic with multiplicative noise, whose
weak errors are known in closed form at every order of the test function.

SGD on ``f_γ(x) = ½ (λ + γ) x²``, ``γ ~ N(0, s²)`` drawn afresh each step:
``x_{k+1} = x_k − lr (λ + γ_k) x_k``. The gradient noise ``γ x`` is state-dependent
(``Σ(x) = s² x²``), so the SMEs are geometric Brownian motions,

    order 1: ``dX = −λ X dt + √lr s X dW``,
    order 2: ``dX = −(λ + lr λ²/2) X dt + √lr s X dW``   (``−∇(f + lr/4 ‖∇f‖²)``),

and every moment of both sides, and of the small-noise Heun scheme on the SMEs, is closed-form
(:class:`~smetool.exact.scalar_sgd.ScalarQuadraticMoments`). Small but complete: a nonlinear test
function (``x³``) makes the control variates' fitted coefficient differ from 1, the noise is
multiplicative (the Heun scheme's error has an ``O(h)`` and an ``O(h²)`` term), and the exact
answers make it the calibration problem of the Monte-Carlo pipeline.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019
from ..checks import check_lr, check_nonnegative, check_positive, check_positive_int
from ..exact.scalar_sgd import ScalarQuadraticMoments
from ..sde import SDE, NoiseKind
from .base import HasExactMoments, SeparableStochasticGradient, TestFunction
from .spec import Option, PluginSpec, positive_option

__all__ = ["ScalarQuadraticSGD", "ScalarQuadraticSME", "Power", "PLUGINS"]


class Power:
    """``g(x) = x_0^m``: ``(P, 1) -> (P,)`` (picklable)."""

    def __init__(self, m: int):
        self.m = int(m)

    def __call__(self, x: Tensor) -> Tensor:
        return x[:, 0] ** self.m

    def __repr__(self) -> str:
        return f"Power({self.m})"


class ScalarQuadraticSME(SDE):
    """``dX = μ X dt + √lr s X dW`` (DIAGONAL noise): the SME of :class:`ScalarQuadraticSGD`,
    ``μ = −λ`` (order 1) or ``−λ − lr λ²/2`` (order 2).

    References
    ----------
    Q. Li, C. Tai, W. E, JMLR 20 (2019) — the SMEs of SGD, orders 1 and 2.
    """

    noise_kind = NoiseKind.DIAGONAL

    def __init__(self, rate: float, lr: float, noise: float):
        self.rate, self.scale = float(rate), math.sqrt(lr) * float(noise)

    def drift(self, t: float, x: Tensor) -> Tensor:
        return self.rate * x

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return self.scale * x

    def __repr__(self) -> str:
        return f"ScalarQuadraticSME(rate={self.rate:g}, scale={self.scale:g})"


class ScalarQuadraticSGD(SeparableStochasticGradient, HasExactMoments):
    """SGD on ``½ (λ + γ) x²`` with ``γ ~ N(0, s²)``, and its SMEs of orders 1 and 2.

    Parameters
    ----------
    curvature : float
        ``λ > 0``.
    noise : float
        ``s ≥ 0``.
    x0 : float
        The initial point (``≠ 0``).
    dtype : torch.dtype
        Of the states when :meth:`initial_state` is given none.

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I: mathematical foundations", JMLR 20 (2019) — SGD on quadratics with
    multiplicative noise and its SMEs.

    Examples
    --------
    >>> alg = ScalarQuadraticSGD()
    >>> alg.exact_moments().discrete(1, 0.25, 1.0)
    0.31640625
    """

    name = "sgd-scalar"
    references = (LI_TAI_E_2019,)
    sme_orders = (1, 2)

    def __init__(self, curvature: float = 1.0, noise: float = 1.0, x0: float = 1.0, *,
                 dtype: torch.dtype = torch.float64):
        owner = type(self).__name__
        self.dtype = dtype
        self.curvature = check_positive(curvature, "curvature", owner)
        self.noise = check_nonnegative(noise, "noise", owner)
        if not (isinstance(x0, (int, float)) and math.isfinite(x0) and x0 != 0):
            raise ValueError(f"{owner}: `x0` must be a finite non-zero number; got {x0!r}.")
        self.x0 = float(x0)

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        n_paths = check_positive_int(n_paths, "n_paths")
        return torch.full((n_paths, 1), self.x0, dtype=dtype or self.dtype, device=device)

    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.randn(n_paths, 1, generator=generator, dtype=dtype, device=device)

    def gradient_with(self, x: Tensor, noise: Tensor) -> Tensor:
        return (self.curvature + self.noise * noise) * x

    def mean_gradient(self, x: Tensor) -> Tensor:
        return self.curvature * x

    def gradient_covariance(self, x: Tensor) -> Tensor:
        return (self.noise * x).square().unsqueeze(-1)

    def sme(self, lr: float, order: int = 1) -> ScalarQuadraticSME:
        lr = check_lr(lr, self.name)
        if order not in self.sme_orders:
            raise ValueError(f"{self.name}: `order` must be one of {self.sme_orders}; got {order!r}.")
        return ScalarQuadraticSME(self.exact_moments().drift_rate(lr, order), lr, self.noise)

    def test_functions(self) -> dict[str, TestFunction]:
        """``"x"``, ``"x^2"``, ``"x^3"``."""
        return {"x": Power(1), "x^2": Power(2), "x^3": Power(3)}

    def exact_moments(self) -> ScalarQuadraticMoments:
        """The closed-form moments of both sides (:class:`ScalarQuadraticMoments`)."""
        return ScalarQuadraticMoments(self.curvature, self.noise, self.x0)

    def exact_weak_errors(self, lrs: Any, horizon: float, order: int) -> dict[str, list[float]]:
        """Per default test function, ``E g(discrete) − E g(exact SME)`` at each learning rate."""
        errors = self.exact_moments().weak_errors(list(lrs), horizon, order, (1, 2, 3))
        return {name: row.tolist() for name, row in zip(("x", "x^2", "x^3"), errors)}

    def __repr__(self) -> str:
        return (f"ScalarQuadraticSGD(curvature={self.curvature:g}, noise={self.noise:g}, "
                f"x0={self.x0:g})")


def _factory(*, dtype: torch.dtype, device: Any, curvature: float,
             noise: float) -> ScalarQuadraticSGD:
    return ScalarQuadraticSGD(curvature=curvature, noise=noise, dtype=dtype)


PLUGINS = (
    PluginSpec(
        name="sgd-scalar",
        factory=_factory,
        description="SGD on a scalar random quadratic with multiplicative Gaussian noise: every "
        "weak error in closed form (Li, Tai & E, 2019)",
        orders=(1, 2),
        lrs=(1 / 8, 1 / 12, 1 / 16, 1 / 24, 1 / 32, 1 / 48),
        horizon=1.0,
        n_paths=4_000,
        steps_per_lr=8,
        # order 2: the errors of ``x`` are resolved to ~10⁴ SE, where the extrapolated Heun
        # solve's O(h³) residual at h = lr/8 is 1.5–5 SE (exact, heun_extrapolated); at lr/64
        # it is 512× smaller while the SE falls too: below half an SE (test_exact_agreement.py)
        order_defaults={2: {"lrs": (1 / 4, 1 / 6, 1 / 8, 1 / 12, 1 / 16, 1 / 24, 1 / 32),
                            "n_paths": 20_000, "steps_per_lr": 64}},
        options=(Option("curvature", positive_option("curvature"), 1.0, "curvature lambda"),
                 Option("noise", positive_option("noise"), 1.0, "noise scale s of gamma ~ N(0, s^2)")),
        algorithm=ScalarQuadraticSGD,
        describe=lambda alg: {"problem": repr(alg)},
    ),
)
"""The ``sgd-scalar`` plug-in of the command line."""
