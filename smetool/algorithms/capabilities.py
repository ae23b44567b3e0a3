"""What the analyses need of a plug-in: a landscape, and the implicit regularizer of its SME.

:class:`HasLandscape` is the capability ``smetool analyze NAME`` and ``smetool compare`` require
(beside the :class:`~smetool.algorithms.base.Algorithm` contract of ``verify``): the
:class:`~smetool.models.landscape.Landscape` the algorithm trains, and optionally the
:class:`Regularizer` its SME predicts.

References
----------
Z. Zhang, Z.-Q. J. Xu, "Implicit regularization of dropout", IEEE TPAMI 46(6), 2024;
D. G. T. Barrett, B. Dherin, "Implicit gradient regularization", ICLR 2021.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..bibliography import Reference
from ..models.landscape import Landscape

__all__ = ["HasLandscape", "Regularizer", "closed_form"]


@dataclass(frozen=True)
class Regularizer:
    """The implicit regularizer ``R`` of an algorithm: its SME's drift is (to the order the
    algorithm declares) ``−∇(f + R)``, so it descends ``f + R`` instead of the training loss ``f``.

    Attributes
    ----------
    name : str
        Short, for tables (``"R_1"``, ``"ρ E‖∇f_γ‖"``).
    formula : str
        One line: what ``R`` is and where it comes from.
    value : callable
        ``value(θ (P, D), generator) -> (R (P,), stderr (P,))``; the standard error is 0 where
        ``R`` is in closed form and the Monte-Carlo error where it is an expectation estimated by
        sampling (``generator`` draws the samples).
    references : tuple of Reference
    """

    name: str
    formula: str
    value: Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]
    references: tuple[Reference, ...] = ()


class HasLandscape(abc.ABC):
    """An algorithm that descends a :class:`~smetool.models.landscape.Landscape`: what
    ``smetool analyze NAME`` and ``smetool compare`` need of a plug-in.

    Mix it into an :class:`Algorithm` subclass. :meth:`landscape` is the loss the algorithm
    trains (``R_S`` of a network, the objective of a test problem); the analyses train it with
    :meth:`Algorithm.step` from several initial points and measure that landscape at the end.
    """

    @abc.abstractmethod
    def landscape(self) -> Landscape:
        """The landscape whose loss the algorithm minimises."""

    def implicit_regularizer(self, lr: float) -> Regularizer | None:
        """The :class:`Regularizer` its SME predicts at learning rate ``lr``; ``None`` when the
        SME's drift is not a gradient ``−∇(f + R)`` (e.g. SignSGD's)."""
        return None


def closed_form(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor, torch.Generator],
                                                            tuple[Tensor, Tensor]]:
    """A :class:`Regularizer` value from a closed form ``fn(θ) -> (P,)`` (standard error 0)."""
    def value(theta: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        r = fn(theta)
        return r, torch.zeros_like(r)
    return value
