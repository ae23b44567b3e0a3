"""Dropout SGD on a network — a dropout mask per step shared by a mini-batch — and its SME:
``smetool verify dropout-net --batch-size B``.

* last-layer dropout with the squared loss (:class:`ExactNetDropoutMiniBatch`): the SME's
  coefficients in closed form by the mini-batch identity
  ``Σ = c_B [mean_i Cov a_i + Cov_i ∇L_i] + (1 − c_B) Cov ā``
  (:class:`~smetool.models.net_dropout_minibatch.MiniBatchLastLayerDropout`; equal to the SME
  :func:`~smetool.algorithms.derive.derive_sme` derives with every mask and example enumerated,
  to round-off), orders 1 and 2, with the control variates on both sides;
* otherwise (:class:`NetDropoutMiniBatch`): the order-1 SME derived with a sampled law
  (Euler–Maruyama only: add ``--method euler``).

References
----------
N. Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
JMLR 15 (2014). Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024. Q. Li, C. Tai, W. E, JMLR 20
(2019).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import (
    LI_TAI_E_2019,
    MILSTEIN_1986,
    SRIVASTAVA_2014_DROPOUT,
    ZHANG_2024_DROPOUT,
    Reference,
)
from ..checks import check_batch_size, check_lr
from ..models.net_dropout import NetDropoutModel
from ..models.net_dropout_exact import LastLayerDropout
from ..models.net_dropout_minibatch import MiniBatchLastLayerDropout
from ..sde import SDE, FunctionSDE, NoiseFree, NoiseKind
from .base import Algorithm, NegativeControl, SeparableNoise, TestFunction, start_on_every_path
from .derived import DerivedAlgorithm
from .dropout_net_sme import check_order
from .noise_laws import SampledNoise
from .observables import Coordinate, SquaredNorm

__all__ = ["NetDropoutMiniBatch", "ExactNetDropoutMiniBatch", "MiniBatchNetDropoutSME",
           "NetMiniBatchUpdate", "NetMiniBatchDraw"]


class NetMiniBatchUpdate:
    """``A(θ; masks, batch) = −∇_θ R^drop_batch(θ; η)``: the dropout gradient on the batch's
    examples, one mask per path shared by its batch (picklable)."""

    def __init__(self, model: NetDropoutModel):
        self.model = model

    def __call__(self, theta: Tensor, xi: tuple[tuple[Tensor, ...] | Tensor, Tensor]) -> Tensor:
        masks, index = xi
        if isinstance(masks, Tensor):  # one dropout layer, e.g. from FiniteNoise.bernoulli_masks
            masks = (masks,)
        return -self.model.batch_dropout_loss_grad(theta, masks, index)


class NetMiniBatchDraw:
    """Draws ``(masks, batch)``: the dropout masks of every layer and ``B`` examples drawn
    uniformly with replacement, for ``n`` paths."""

    def __init__(self, model: NetDropoutModel, batch_size: int):
        self.model, self.batch_size = model, batch_size

    def __call__(self, n: int, generator: torch.Generator, *, dtype: torch.dtype,
                 device: torch.device | str | None = None) -> tuple[tuple[Tensor, ...], Tensor]:
        where = generator.device if device is None else device
        masks = self.model.sample_masks(n, generator, dtype=dtype, device=where)
        index = torch.randint(self.model.n_points, (n, self.batch_size), generator=generator,
                              device=generator.device)
        return masks, index.to(where)


class _NegLossGrad:
    def __init__(self, model: NetDropoutModel):
        self.model = model

    def __call__(self, t: float, x: Tensor) -> Tensor:
        return -self.model.loss_grad(x)


def _no_noise(t: float, x: Tensor) -> Tensor:
    return x.new_zeros(x.shape[1], 1)


class NetDropoutMiniBatch(DerivedAlgorithm):
    """Dropout SGD on a network: one mask per step and path (every dropout layer), shared by a
    mini-batch of ``B`` examples drawn with replacement, and its order-1 SME **derived**
    (:func:`~smetool.algorithms.derive.derive_sme` with a :class:`SampledNoise`): the drift
    estimated by the mean of ``K`` draws of the mini-batch dropout gradient, the noise from pairs
    of draws (covariance exactly ``lr Σ``, ``Σ`` the covariance of dropout *and* mini-batch
    noise), Euler–Maruyama only (``method="euler"``), no control variates.

    Parameters
    ----------
    model : NetDropoutModel
    theta0 : Tensor, (D,), optional
    batch_size : int
        ``B`` in ``[1, n]``.
    drift_samples, noise_pairs : int
        ``K`` (the SME step must be ``h ≤ lr K``) and ``k``.

    References
    ----------
    N. Srivastava et al., JMLR 15 (2014); Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024;
    Q. Li, C. Tai, W. E, JMLR 20 (2019) (the derivation).
    """

    name = "dropout-net"
    references: ClassVar[tuple[Reference, ...]] = (SRIVASTAVA_2014_DROPOUT, ZHANG_2024_DROPOUT,
                                                   LI_TAI_E_2019, MILSTEIN_1986)
    sme_orders: ClassVar[tuple[int, ...]] = (1,)

    def __init__(self, model: NetDropoutModel, theta0: Tensor | None = None, *, batch_size: int,
                 drift_samples: int = 1, noise_pairs: int = 1):
        if not isinstance(model, NetDropoutModel):
            raise TypeError(f"`model` must be a NetDropoutModel; got {type(model).__name__}.")
        self.model = model
        self.batch_size = check_batch_size(batch_size, model.n_points, self.name)
        theta0 = model.theta0 if theta0 is None else torch.as_tensor(theta0)
        super().__init__(NetMiniBatchUpdate(model), SampledNoise(NetMiniBatchDraw(model, batch_size)),
                         theta0, {"R_S": model.loss}, name=self.name,
                         drift_samples=drift_samples, noise_pairs=noise_pairs)
        start = self.x0.unsqueeze(0)
        j = int(model.loss_hvp(start, model.loss_grad(start))[0].abs().argmax())
        tests: dict[str, TestFunction] = {"R_S": model.loss,
                                          "theta_norm_sq": SquaredNorm(),
                                          f"theta[{j}]": Coordinate(j)}
        self._tests = tests

    @property
    def exact(self) -> bool:
        """``False``: the SME is sampled."""
        return False

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The half-speed SME and the flow of ``R_S`` without dropout's implicit regularizer (and
        without noise): both ``O(1)`` drift errors."""
        flow = NoiseFree(FunctionSDE(_NegLossGrad(self.model), _no_noise, noise_kind="additive",
                                     noise_dim=1))
        return super().negative_controls(lr, order) + (
            NegativeControl("no R_1", flow, 0.0,
                            "the flow of R_S: misses dropout's implicit regularizer, O(1) error"),)

    def sme(self, lr: float, order: int = 1) -> SDE:
        """The derived order-1 SME (:class:`SampledDerivedSME`)."""
        check_order(order, self.sme_orders)
        return super().sme(lr, order)

    def __repr__(self) -> str:
        layers = ", ".join(f"{la.name}: p={la.keep_prob:g}" for la in self.model.layers)
        return (f"NetDropoutMiniBatch(D={self.model.n_params}, n={self.model.n_points}, "
                f"batch_size={self.batch_size}, loss={self.model.loss_name!r}, dropout=[{layers}])")


class MiniBatchNetDropoutSME(SDE):
    """The SME of last-layer dropout SGD on mini-batches, exact: drift ``−∇L_S`` (order 1) or
    ``−∇L_S − (lr/2) ∇²L_S ∇L_S`` (order 2), GENERAL noise ``√lr F`` with ``F = ∂Ψ/∂θ``
    (:class:`~smetool.models.net_dropout_minibatch.MiniBatchLastLayerDropout`), applied
    matrix-free.

    Parameters
    ----------
    closed : MiniBatchLastLayerDropout
    lr : float
    order : {1, 2}
    regularized : bool
        ``False``: the drift ``−∇R_S`` misses dropout's implicit regularizer (a negative control).
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, closed: MiniBatchLastLayerDropout, lr: float, order: int = 1, *,
                 regularized: bool = True):
        self.closed = closed
        self.lr = check_lr(lr)
        self.order = check_order(order, (1, 2))
        self.regularized = bool(regularized)
        self.noise_dim = closed.noise_dim

    def _grad(self, x: Tensor) -> Tensor:
        model = self.closed.model
        return self.closed.expected_loss_grad(x) if self.regularized else model.loss_grad(x)

    def drift(self, t: float, x: Tensor) -> Tensor:
        g = self._grad(x)
        if self.order == 1:
            return -g
        hv = (self.closed.expected_loss_hvp(x, g) if self.regularized
              else self.closed.model.loss_hvp(x, g))
        return -g - 0.5 * self.lr * hv

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return math.sqrt(self.lr) * self.closed.noise_factor(x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        return math.sqrt(self.lr) * self.closed.noise_factor_matvec(x, dW)

    def __repr__(self) -> str:
        extra = "" if self.regularized else ", regularized=False"
        return (f"MiniBatchNetDropoutSME(order={self.order}, lr={self.lr:g}, "
                f"batch_size={self.closed.batch_size}{extra})")


class ExactNetDropoutMiniBatch(SeparableNoise, Algorithm):
    """Dropout SGD on a network with last-layer dropout and the squared loss: one mask per step,
    shared by a mini-batch of ``B`` examples drawn with replacement; its SMEs of orders 1 and 2
    exact (:class:`MiniBatchNetDropoutSME`) and the control-variate contract (exact mean step
    ``x − lr ∇L_S`` and step covariance ``lr² Σ``).

    Parameters
    ----------
    model : NetDropoutModel
        Last-layer dropout, squared loss (:class:`~smetool.models.LastLayerDropout` applies).
    theta0 : Tensor, (D,), optional
    batch_size : int
        ``B`` in ``[1, n]``.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024; Q. Li, C. Tai, W. E, JMLR 20 (2019).
    """

    name = "dropout-net"
    references: ClassVar[tuple[Reference, ...]] = (SRIVASTAVA_2014_DROPOUT, ZHANG_2024_DROPOUT,
                                                   LI_TAI_E_2019)
    sme_orders: ClassVar[tuple[int, ...]] = (1, 2)

    def __init__(self, model: NetDropoutModel, theta0: Tensor | None = None, *, batch_size: int):
        if not isinstance(model, NetDropoutModel):
            raise TypeError(f"`model` must be a NetDropoutModel; got {type(model).__name__}.")
        self.model = model
        self.closed = MiniBatchLastLayerDropout(LastLayerDropout(model), batch_size)
        self.batch_size = self.closed.batch_size
        theta0 = model.theta0 if theta0 is None else torch.as_tensor(theta0)
        if theta0.shape != (model.n_params,) or not bool(torch.isfinite(theta0).all()):
            raise ValueError(f"`theta0` must be a finite tensor of shape ({model.n_params},); got "
                             f"{tuple(theta0.shape)}.")
        self.theta0 = theta0
        self._update = NetMiniBatchUpdate(model)
        self._draw = NetMiniBatchDraw(model, self.batch_size)
        start = theta0.unsqueeze(0)
        exact = self.closed.exact
        j = int(exact.expected_loss_hvp(start, exact.expected_loss_grad(start))[0].abs().argmax())
        self._tests: dict[str, TestFunction] = {
            "R_S": model.loss, "L_S": exact.expected_loss, "theta_norm_sq": SquaredNorm(),
            f"theta[{j}]": Coordinate(j)}

    @property
    def exact(self) -> bool:
        """``True``: the SME is in closed form."""
        return True

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        return start_on_every_path(self.theta0, n_paths, dtype=dtype, device=device)

    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Any:
        """The masks and the mini-batch of one step, ``((P, m), (P, B))``."""
        return self._draw(n_paths, generator, dtype=dtype, device=device)

    def step_with(self, x: Tensor, lr: float, noise: Any) -> Tensor:
        return x + lr * self._update(x, noise)

    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        return x - lr * self.closed.expected_loss_grad(x)

    def step_covariance(self, x: Tensor, lr: float) -> Tensor:
        return lr * lr * self.closed.noise_covariance(x)

    def sme(self, lr: float, order: int = 1) -> SDE:
        """The exact SME (:class:`MiniBatchNetDropoutSME`)."""
        return MiniBatchNetDropoutSME(self.closed, lr, check_order(order, self.sme_orders))

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """Without ``R_1`` (an ``O(1)`` drift error), plus the defaults of :class:`Algorithm`."""
        wrong = MiniBatchNetDropoutSME(self.closed, lr, order, regularized=False)
        own = (NegativeControl("no R_1", wrong, 0.0,
                               "the drift misses dropout's implicit regularizer R_1: O(1) error"),)
        return own + super().negative_controls(lr, order)

    def test_functions(self) -> dict[str, TestFunction]:
        """``"R_S"``, ``"L_S"``, ``"theta_norm_sq"`` and ``"theta[j]"`` (the coordinate where the
        order-1 error grows fastest)."""
        return dict(self._tests)

    def __repr__(self) -> str:
        return (f"ExactNetDropoutMiniBatch(D={self.model.n_params}, n={self.model.n_points}, "
                f"batch_size={self.batch_size})")


