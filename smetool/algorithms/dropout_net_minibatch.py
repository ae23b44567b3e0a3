"""Dropout SGD on a network — a dropout mask per step shared by a mini-batch — and its order-1
SME derived from the update (:func:`~smetool.algorithms.derive.derive_sme` with a sampled law):
``smetool verify dropout-net --batch-size B --method euler``.

References
----------
N. Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
JMLR 15 (2014). Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024. Q. Li, C. Tai, W. E, JMLR 20
(2019).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..bibliography import (
    LI_TAI_E_2019,
    MILSTEIN_1986,
    SRIVASTAVA_2014_DROPOUT,
    ZHANG_2024_DROPOUT,
    Reference,
)
from ..checks import check_batch_size
from ..models.net_dropout import NetDropoutModel
from ..sde import SDE, FunctionSDE, NoiseFree
from .base import NegativeControl, TestFunction
from .derived import DerivedAlgorithm
from .dropout_net_sme import check_order
from .noise_laws import SampledNoise

__all__ = ["NetDropoutMiniBatch", "NetMiniBatchUpdate", "NetMiniBatchDraw"]


class NetMiniBatchUpdate:
    """``A(θ; masks, batch) = −∇_θ R^drop_batch(θ; η)``: the dropout gradient on the batch's
    examples, one mask per path shared by its batch (picklable)."""

    def __init__(self, model: NetDropoutModel):
        self.model = model

    def __call__(self, theta: Tensor, xi: tuple[tuple[Tensor, ...], Tensor]) -> Tensor:
        masks, index = xi
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
                                          "theta_norm_sq": lambda x: (x * x).sum(dim=1),
                                          f"theta[{j}]": lambda x: x[:, j]}
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
