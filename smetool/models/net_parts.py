"""The parts of :class:`~smetool.models.NetDropoutModel`: its losses, the mask slots that stand in
for a network's dropout layers, and how the layers are found and replaced.

Keep-probability convention (Zhang, Li, Luo & Xu, ICLR 2024): ``p`` is the probability of
**keeping** a unit; ``torch.nn.Dropout(q)`` keeps with probability ``p = 1 − q``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .net_audit import CHANNEL_DROPOUTS as CHANNEL_RANKS

__all__ = ["CHANNEL_DROPOUTS", "LOSSES", "mse_loss", "cross_entropy_loss", "MaskSlot",
           "DropoutLayer", "dropout_layers", "set_submodule"]

CHANNEL_DROPOUTS = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
assert set(CHANNEL_DROPOUTS) == set(CHANNEL_RANKS)  # one list of channel layers: net_audit's


def mse_loss(out: Tensor, y: Tensor) -> Tensor:
    """``1/(2n) Σ_i ‖f(x_i) − y_i‖²`` (the papers' scaling; ``torch.nn.MSELoss`` is ``1/(nC) Σ``)."""
    e = out - y
    return 0.5 * (e * e).sum() / out.shape[0]


def cross_entropy_loss(out: Tensor, y: Tensor) -> Tensor:
    """``(1/n) Σ_i −log softmax(f(x_i))_{y_i}`` for integer labels ``y`` (as ``nn.CrossEntropyLoss``)."""
    return torch.nn.functional.cross_entropy(out, y)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_loss, "cross_entropy": cross_entropy_loss}
"""Loss names: ``"mse"`` (regression, ``y`` of the outputs' shape or ``(n,)`` for one output) and
``"cross_entropy"`` (classification, integer labels ``y (n,)``)."""


class MaskSlot(nn.Module):
    """Stands in for a dropout layer: multiplies its input by the buffer ``mask`` (``1 + η``),
    which :class:`NetDropoutModel` supplies per path through ``functional_call``."""

    def __init__(self, unit_shape: tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mask", torch.ones(unit_shape))

    mask: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


@dataclass(frozen=True)
class DropoutLayer:
    """One dropout layer of a network.

    Attributes
    ----------
    name : str
        Its name in the module (``"2"``, ``"features.drop"``).
    keep_prob : float
        ``p = 1 − q`` for ``nn.Dropout(q)``.
    mask_shape : tuple of int
        The shape of one mask (the layer's feature shape for ``nn.Dropout``, ``(C, 1, …)`` for the
        channel-wise ``nn.Dropout1d/2d/3d``).
    """

    name: str
    keep_prob: float
    mask_shape: tuple[int, ...]

    @property
    def units(self) -> int:
        """Independent Bernoulli variables in one mask."""
        return math.prod(self.mask_shape)


def dropout_layers(module: nn.Module) -> list[tuple[str, nn.modules.dropout._DropoutNd]]:
    return [(name, sub) for name, sub in module.named_modules()
            if isinstance(sub, (nn.Dropout, *CHANNEL_DROPOUTS))]


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
