"""What the analyses read off an ``nn.Module`` beyond its loss: the first layer's units (for
condensation), whether its activations are odd, and a reproducible LeCun initialisation.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024
(condensation of the first layer's units); Y. LeCun, L. Bottou, G. Orr, K.-R. Müller, "Efficient
BackProp", in *Neural Networks: Tricks of the Trade*, Springer 1998 (weights ``N(0, 1/fan_in)``).
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor, nn

from .landscape import Units

__all__ = ["WEIGHTED", "lecun_init", "odd_activations", "FirstLayer"]

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layers with a weight matrix: units, initialisation."""

M = TypeVar("M", bound=nn.Module)

_SHAPE_ONLY = (nn.Flatten, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.Identity)


def lecun_init(net: M, generator: torch.Generator, out_scale: float = 1.0) -> M:
    """Weights ``N(0, 1/fan_in)`` (the last weighted layer's times ``out_scale``), biases 0, drawn
    in float64 from ``generator`` layer by layer in module order; in place, returns ``net``."""
    layers = [m for m in net.modules() if isinstance(m, WEIGHTED)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            scale = (out_scale if i == len(layers) - 1 else 1.0) / math.sqrt(layer.weight[0].numel())
            w = torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64)
            layer.weight.copy_(scale * w)
            if layer.bias is not None:
                layer.bias.zero_()
    return net


def odd_activations(module: nn.Module, skip: tuple[type, ...] = ()) -> bool:
    """Whether every activation of ``module`` is odd (tanh): ``w`` and ``−w`` are then one feature.

    The leaves that are not weighted layers, shape operations or ``skip`` (mask slots) count as
    activations."""
    acts = [m for m in module.modules() if not list(m.children())
            and not isinstance(m, WEIGHTED + _SHAPE_ONLY + skip)]
    return bool(acts) and all(isinstance(m, nn.Tanh) for m in acts)


class FirstLayer:
    """The units of a module's first weighted layer, read from flat parameter vectors.

    Parameters
    ----------
    module : nn.Module
    slices : dict of str to slice
        Where each named parameter sits in ``θ``.
    antipodal : bool

    Raises
    ------
    ValueError
        The module has no ``nn.Linear`` or ``nn.Conv`` layer.
    """

    def __init__(self, module: nn.Module, slices: dict[str, slice], antipodal: bool):
        layers = [(name, m) for name, m in module.named_modules() if isinstance(m, WEIGHTED)]
        if not layers:
            raise ValueError("the network has no nn.Linear or nn.Conv layer to count units of.")
        name, first = layers[0]
        prefix = f"{name}." if name else ""
        self.weight = slices[f"{prefix}weight"]
        self.bias = slices[f"{prefix}bias"] if first.bias is not None else None
        self.n_units = first.weight.shape[0]
        self.next = None
        if len(layers) > 1:
            self.next = (slices[f"{layers[1][0]}.weight"], layers[1][1].weight.shape[0])
        self.antipodal = antipodal

    def __call__(self, theta: Tensor) -> Units:
        """Weights ``(P, m, d)`` (bias appended) and amplitudes ``(P, m)``: the input-weight norm,
        times the norm of the next layer's weights on that unit's outputs when that layer is a
        linear map of the flattened outputs."""
        P, m = theta.shape[0], self.n_units
        W = theta[:, self.weight].reshape(P, m, -1)
        if self.bias is not None:
            W = torch.cat([W, theta[:, self.bias].unsqueeze(-1)], dim=-1)
        amp = W.norm(dim=-1)
        if self.next is not None:
            where, rows = self.next
            out = theta[:, where].reshape(P, rows, -1)
            if out.shape[2] % m == 0:
                amp = amp * out.reshape(P, rows, m, -1).norm(dim=(1, 3))
        return Units(W, amp, self.antipodal)
