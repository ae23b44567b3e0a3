"""Gradient descent and minibatch SGD on any :class:`~smetool.models.landscape.Landscape`.

* :class:`GradientDescent`: ``θ ← θ − lr ∇f(θ)``, with the gradient flow as its SME (order 1) and
  the modified flow of ``f + (lr/4)‖∇f‖²`` (order 2, Barrett & Dherin's implicit gradient
  regularizer; Li, Tai & E's order-2 drift without noise). It is the reference of every analysis:
  each algorithm is compared with GD from the same initial points.
* :class:`MinibatchSGD`: ``θ ← θ − lr (∇f_γ(θ) + λ θ)`` with the landscape's own minibatch law
  (indices of a finite sum, or a Gaussian noise model), optionally with weight decay ``λ``. Its
  mean step is exact on every landscape (``E ∇f_γ = ∇f``). Its SME is built on the problems that
  have the minibatch covariance in closed form (:class:`~smetool.algorithms.sgd.SGDLeastSquares`,
  :class:`~smetool.algorithms.sgd_wd.SGDWeightDecay`); here it refuses.

References
----------
D. G. T. Barrett, B. Dherin, "Implicit gradient regularization", ICLR 2021. S. L. Smith,
B. Dherin, D. G. T. Barrett, S. De, "On the origin of implicit regularization in stochastic
gradient descent", ICLR 2021. Q. Li, C. Tai, W. E, JMLR 20 (2019).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import BARRETT_DHERIN_2021, LI_TAI_E_2019, SMITH_2021_ORIGIN
from ..checks import check_lr, check_nonnegative, check_positive_int
from ..models.landscape import Landscape
from ..sde import SDE, NoiseKind
from .base import Algorithm, NegativeControl, SeparableStochasticGradient, TestFunction, start_on_every_path
from .capabilities import HasLandscape, Regularizer, closed_form
from .observables import SquaredNorm

__all__ = ["GradientFlow", "GradientDescent", "MinibatchSGD", "minibatch_norm_moment",
           "sgd_regularizer", "MINIBATCH_DRAWS"]

MINIBATCH_DRAWS = 64
"""Minibatch draws per point of a Monte-Carlo regularizer value such as ``E‖∇f_γ‖²``."""


def _check_landscape(landscape: Any, owner: str) -> Landscape:
    if not isinstance(landscape, Landscape):
        raise TypeError(f"{owner}: `landscape` must be an smetool Landscape; got "
                        f"{type(landscape).__name__}.")
    return landscape


def _check_start(theta0: Any, landscape: Landscape, owner: str) -> Tensor:
    theta0 = torch.as_tensor(theta0)
    D = landscape.n_params
    if theta0.shape != (D,) or not theta0.is_floating_point() \
            or not bool(torch.isfinite(theta0).all()):
        raise ValueError(f"{owner}: `theta0` must be a finite floating-point tensor of shape "
                         f"({D},); got {tuple(theta0.shape)}.")
    return theta0


def minibatch_norm_moment(landscape: Landscape, theta: Tensor, generator: torch.Generator,
                          power: float, *, shift: Tensor | None = None,
                          n: int = MINIBATCH_DRAWS) -> tuple[Tensor, Tensor]:
    """``E_γ ‖∇f_γ(θ) + shift‖^power`` per path by ``n`` minibatch draws: mean and standard
    error, each ``(P,)``."""
    n = check_positive_int(n, "n")
    P, D = theta.shape
    rows = theta.repeat_interleave(n, dim=0)
    batch = landscape.draw_minibatch(P * n, generator, dtype=theta.dtype, device=theta.device)
    g = landscape.minibatch_gradient(rows, batch)
    if shift is not None:
        g = g + shift.repeat_interleave(n, dim=0)
    values = g.norm(dim=1).pow(power).reshape(P, n)
    return values.mean(dim=1), values.std(dim=1) / n**0.5


def sgd_regularizer(landscape: Landscape, lr: float, weight_decay: float = 0.0) -> Regularizer:
    """SGD's implicit regularizer ``(lr/4) E_γ‖∇f_γ + λθ‖² + (λ/2)‖θ‖²`` (Smith, Dherin, Barrett
    & De 2021, plus the explicit weight decay), the expectation by :data:`MINIBATCH_DRAWS`
    minibatch draws of ``landscape``."""
    lr, wd = check_lr(lr), check_nonnegative(weight_decay, "weight_decay")

    def value(theta: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mean, se = minibatch_norm_moment(landscape, theta, generator, 2.0,
                                         shift=wd * theta if wd else None)
        return 0.25 * lr * mean + 0.5 * wd * (theta * theta).sum(dim=1), 0.25 * lr * se

    name = "(lr/4) E‖∇f_γ + λθ‖² + (λ/2)‖θ‖²" if wd else "(lr/4) E‖∇f_γ‖²"
    return Regularizer(name, "the minibatch-gradient norm of SGD's modified loss"
                       + (" plus the weight decay's (λ/2)‖θ‖²" if wd else ""), value,
                       (SMITH_2021_ORIGIN,))


class GradientFlow(SDE):
    """``dΘ = −∇f(Θ) dt`` (order 1) or ``dΘ = −∇(f + (lr/4)‖∇f‖²)(Θ) dt`` (order 2), noise free:
    the SME of gradient descent on a landscape, declared with a zero additive noise so every
    solver integrates it.

    References
    ----------
    Barrett & Dherin, ICLR 2021 (the order-2 modified loss); Li, Tai & E, JMLR 2019.
    """

    noise_kind = NoiseKind.ADDITIVE
    noise_dim = 1

    def __init__(self, landscape: Landscape, lr: float = 1.0, order: int = 1):
        self.landscape = _check_landscape(landscape, "GradientFlow")
        self.lr = check_lr(lr, "GradientFlow")
        if isinstance(order, bool) or order not in (1, 2):
            raise ValueError(f"GradientFlow: `order` must be 1 or 2; got {order!r}.")
        self.order = int(order)

    def drift(self, t: float, x: Tensor) -> Tensor:
        g = self.landscape.gradient(x)
        if self.order == 1:
            return -g
        return -g - 0.5 * self.lr * self.landscape.hvp(x, g.unsqueeze(1))[:, 0]

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[1], 1)

    def __repr__(self) -> str:
        return f"GradientFlow({self.landscape.label or type(self.landscape).__name__}, " \
               f"order={self.order})"


class _OnLandscape(HasLandscape):
    """A start point on a landscape, and the test functions every such rule has."""

    _landscape: Landscape
    theta0: Tensor

    def landscape(self) -> Landscape:
        return self._landscape

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``θ0`` on every path, ``(P, D)`` (a fresh tensor)."""
        return start_on_every_path(self.theta0, n_paths, dtype=dtype, device=device,
                                   owner=type(self).__name__)

    def test_functions(self) -> dict[str, TestFunction]:
        """``"loss"`` (the landscape's ``f``) and ``"norm_sq"`` (``‖θ‖²``)."""
        return {"loss": self._landscape.loss, "norm_sq": SquaredNorm()}


class GradientDescent(_OnLandscape, Algorithm):
    """Full-batch gradient descent on a landscape, with its SMEs (:class:`GradientFlow`).

    Parameters
    ----------
    landscape : Landscape
    theta0 : Tensor, (D,)

    References
    ----------
    Barrett & Dherin, ICLR 2021; Li, Tai & E, JMLR 2019.
    """

    name = "gd"
    references = (BARRETT_DHERIN_2021, LI_TAI_E_2019)
    sme_orders = (1, 2)

    def __init__(self, landscape: Landscape, theta0: Any):
        self._landscape = _check_landscape(landscape, "GradientDescent")
        self.theta0 = _check_start(theta0, self._landscape, "GradientDescent")

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """``x − lr ∇f(x)`` (``generator`` is not used)."""
        return x - check_lr(lr, "GradientDescent") * self._landscape.gradient(x)

    def sme(self, lr: float, order: int = 1) -> GradientFlow:
        return GradientFlow(self._landscape, lr, order)

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """Order 1: the default (half-speed time); order 2: the plain gradient flow, which misses
        the ``(lr/4)‖∇f‖²`` term (slope 1)."""
        if order == 2:
            return (NegativeControl("order-1 SME", GradientFlow(self._landscape, lr, 1), 1.0,
                                    "misses the implicit gradient regularizer (lr/4)‖∇f‖²"),)
        return super().negative_controls(lr, order)

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``(lr/4)‖∇f‖²``, exact (Barrett & Dherin 2021)."""
        lr = check_lr(lr)

        def value(theta: Tensor) -> Tensor:
            g = self._landscape.gradient(theta)
            return 0.25 * lr * (g * g).sum(dim=1)

        return Regularizer("(lr/4) ‖∇f‖²", "implicit gradient regularization of the "
                           "order-2 modified equation", closed_form(value), (BARRETT_DHERIN_2021,))

    def __repr__(self) -> str:
        return f"GradientDescent({self._landscape.label or type(self._landscape).__name__})"


class MinibatchSGD(_OnLandscape, SeparableStochasticGradient):
    """``θ ← θ − lr (∇f_γ(θ) + λ θ)`` with the landscape's minibatch law (module docstring).

    Parameters
    ----------
    landscape : Landscape
        Its :meth:`~smetool.models.landscape.Landscape.draw_minibatch` law is SGD's noise.
    theta0 : Tensor, (D,)
    weight_decay : float
        ``λ ≥ 0``.

    References
    ----------
    Li, Tai & E, JMLR 2019; Smith, Dherin, Barrett & De, ICLR 2021 (the implicit regularizer).
    """

    name = "sgd"
    references = (LI_TAI_E_2019, SMITH_2021_ORIGIN)
    sme_orders: ClassVar[tuple[int, ...]] = ()

    def __init__(self, landscape: Landscape, theta0: Any, weight_decay: float = 0.0):
        owner = type(self).__name__
        self._landscape = _check_landscape(landscape, owner)
        self.theta0 = _check_start(theta0, self._landscape, owner)
        self.weight_decay = check_nonnegative(weight_decay, "weight_decay", owner)

    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> Any:
        """The minibatch ``γ`` of one step (the landscape's law)."""
        return self._landscape.draw_minibatch(n_paths, generator, dtype=dtype, device=device)

    def gradient_with(self, x: Tensor, noise: Any) -> Tensor:
        """``∇f_γ(x) + λ x``."""
        return self._landscape.minibatch_gradient(x, noise) + self.weight_decay * x

    def mean_gradient(self, x: Tensor) -> Tensor:
        """``∇f(x) + λ x``, exact on every landscape."""
        return self._landscape.gradient(x) + self.weight_decay * x

    def sme(self, lr: float, order: int = 1) -> SDE:
        """Refused: the SGD SME needs the minibatch covariance in closed form, which a general
        landscape does not provide (:class:`~smetool.algorithms.sgd.SGDLeastSquares` and
        :class:`~smetool.algorithms.sgd_wd.SGDWeightDecay` have it)."""
        raise ValueError(f"{type(self).__name__} on {self._landscape.label or 'this landscape'}: "
                         "the SGD SME needs the minibatch gradient covariance in closed form; "
                         "verify SGD on its own problem (`smetool verify sgd`).")

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """:func:`sgd_regularizer` with this rule's weight decay."""
        return sgd_regularizer(self._landscape, lr, self.weight_decay)

    def __repr__(self) -> str:
        wd = f", weight_decay={self.weight_decay:g}" if self.weight_decay else ""
        return f"{type(self).__name__}({self._landscape.label or type(self._landscape).__name__}{wd})"
