"""The plug-in contract: a batched discrete training algorithm paired with its SME."""

from __future__ import annotations

import abc
import math
import numbers
from typing import Callable, ClassVar

import torch
from torch import Tensor

from ..sde import SDE

__all__ = ["Algorithm", "StochasticGradientAlgorithm", "TestFunction", "check_positive",
           "on_leading_block"]

TestFunction = Callable[[Tensor], Tensor]
"""A test function ``g``: states ``(P, D) -> (P,)``."""


def check_positive(value, name: str, owner: str) -> float:
    """``value`` as a float if it is a positive finite real number (not a bool).

    Raises
    ------
    ValueError
        "``owner``: `name` must be a positive finite number; got …".
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{owner}: `{name}` must be a positive finite number; got {value!r}.")
    return float(value)


def on_leading_block(test_functions: dict[str, TestFunction], dim: int) -> dict[str, TestFunction]:
    """The test functions of a base problem applied to the first ``dim`` coordinates of a larger
    state (the position ``x`` of ``(x, v)``, ``(x, u)``, ``(x, m, u)``)."""
    return {name: (lambda z, g=g: g(z[:, :dim])) for name, g in test_functions.items()}


class Algorithm(abc.ABC):
    """A stochastic training algorithm and its stochastic modified equation (SME).

    A plug-in implements one step of the discrete algorithm for a batch of paths and returns its
    SME as an :class:`smetool.SDE`. The time scaling is Li, Tai & E's: step ``k`` of the algorithm
    with learning rate ``lr`` corresponds to SDE time ``t = k · lr``, so a horizon ``T`` means
    ``T / lr`` steps. :func:`smetool.verify` works with any object that meets this contract.

    Attributes
    ----------
    name : str
        Registry name (``smetool verify NAME``).
    reference : str
        The paper the SME comes from.
    sme_orders : tuple of int
        The SME orders :meth:`sme` provides (e.g. ``(1, 2)``).

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and adaptive stochastic gradient
    algorithms", ICML 2017; "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I: mathematical foundations", JMLR 20 (2019).
    """

    name: ClassVar[str]
    reference: ClassVar[str] = ""
    sme_orders: ClassVar[tuple[int, ...]] = (1,)

    @abc.abstractmethod
    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """The initial state of every path, ``(P, D)`` (the SME starts at the same point)."""

    @abc.abstractmethod
    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One step of the discrete algorithm with learning rate ``lr``: ``(P, D) -> (P, D)``."""

    @abc.abstractmethod
    def sme(self, lr: float, order: int = 1) -> SDE:
        """The SME of the given order for learning rate ``lr``, in SDE time ``t = k · lr``."""

    @abc.abstractmethod
    def test_functions(self) -> dict[str, TestFunction]:
        """The default test functions ``g``, by name: ``(P, D) -> (P,)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class StochasticGradientAlgorithm(Algorithm):
    """An :class:`Algorithm` whose step is ``x ← x − lr · g(x; ξ)`` for an unbiased stochastic
    gradient ``g`` with a fresh ``ξ`` per step and path.

    Plug-ins of this form (mini-batch SGD, dropout GD) implement :meth:`stochastic_gradient`;
    the step follows. Wrappers that change how gradients are combined, such as
    :class:`~smetool.algorithms.svag.SVAG`, need nothing else from them.
    """

    @abc.abstractmethod
    def stochastic_gradient(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One draw of the stochastic gradient on every path, ``(P, D) -> (P, D)``."""

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """``x − lr · g(x; ξ)`` with a fresh ``ξ`` per path."""
        return x - lr * self.stochastic_gradient(x, generator)
