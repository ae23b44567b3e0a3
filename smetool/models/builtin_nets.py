"""The networks of ``smetool verify dropout-net``: a small MLP and a small CNN with dropout layers,
initialised from an explicit generator (never torch's global random state)."""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_keep_prob, check_nonnegative, check_positive_int
from .net_units import lecun_init

__all__ = ["mlp", "cnn", "PLACEMENTS"]

PLACEMENTS = ("last", "every")
"""``"last"``: dropout only on the input of the final linear layer (the exact case with the squared
loss); ``"every"``: after every hidden activation."""


def _check(keep_prob: float, placement: str) -> float:
    if placement not in PLACEMENTS:
        raise ValueError(f"`placement` must be one of {', '.join(PLACEMENTS)}; got {placement!r}.")
    return check_keep_prob(keep_prob)


def mlp(in_features: int, width: int, out_features: int, *, keep_prob: float, depth: int = 1,
        placement: str = "last", out_bias: bool = True, out_scale: float = 1.0,
        seed: int = 0) -> nn.Sequential:
    """``depth`` tanh layers of ``width`` units, then a linear output, with dropout of keep
    probability ``keep_prob`` (``nn.Dropout(1 − keep_prob)``) where ``placement`` says.

    Weights ``N(0, 1/fan_in)`` (output layer times ``out_scale``), biases zero, drawn in float64
    from ``torch.Generator().manual_seed(seed)``; the module is float64.
    """
    p = _check(keep_prob, placement)
    depth = check_positive_int(depth, "depth")
    check_nonnegative(out_scale, "out_scale")
    layers: list[nn.Module] = []
    d = check_positive_int(in_features, "in_features")
    for k in range(depth):
        layers += [nn.Linear(d, check_positive_int(width, "width"), dtype=torch.float64), nn.Tanh()]
        if placement == "every" or k == depth - 1:
            layers.append(nn.Dropout(1.0 - p))
        d = width
    layers.append(nn.Linear(d, check_positive_int(out_features, "out_features"), bias=out_bias,
                            dtype=torch.float64))
    return lecun_init(nn.Sequential(*layers), torch.Generator().manual_seed(seed), out_scale)


def cnn(channels: int, out_features: int, *, keep_prob: float, image_size: int = 8,
        placement: str = "last", out_scale: float = 1.0, seed: int = 0) -> nn.Sequential:
    """``Conv2d(1, channels, 3, padding=1)`` → tanh → ``AvgPool2d(2)`` → flatten → dropout →
    linear, for ``(n, 1, s, s)`` images; ``placement="every"`` adds channel dropout
    (``nn.Dropout2d``) after the convolution. Initialised as :func:`mlp`.
    """
    p = _check(keep_prob, placement)
    channels = check_positive_int(channels, "channels")
    size = check_positive_int(image_size, "image_size") // 2
    layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1, dtype=torch.float64), nn.Tanh()]
    if placement == "every":
        layers.append(nn.Dropout2d(1.0 - p))
    layers += [nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(1.0 - p),
               nn.Linear(channels * size * size, check_positive_int(out_features, "out_features"),
                         dtype=torch.float64)]
    return lecun_init(nn.Sequential(*layers), torch.Generator().manual_seed(seed), out_scale)
