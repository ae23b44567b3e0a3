"""Picklable test functions shared by plug-ins: a coordinate and the squared norm of the state.

Plain classes rather than lambdas, so that a plug-in's test functions survive pickling (the
Dask executor of :mod:`smetool.montecarlo` ships them to workers).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["Coordinate", "SquaredNorm"]


class Coordinate:
    """``g(x) = x_i``: ``(P, D) -> (P,)``."""

    def __init__(self, i: int):
        self.i = int(i)

    def __call__(self, x: Tensor) -> Tensor:
        return x[:, self.i]

    def __repr__(self) -> str:
        return f"Coordinate({self.i})"


class SquaredNorm:
    """``g(x) = ‖x‖²``: ``(P, D) -> (P,)``."""

    def __call__(self, x: Tensor) -> Tensor:
        return (x * x).sum(dim=1)

    def __repr__(self) -> str:
        return "SquaredNorm()"
