"""The plug-in contract: a batched discrete training algorithm paired with its SME."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019, Reference, unique_references
from ..sde import SDE

__all__ = ["Algorithm", "StochasticGradientAlgorithm", "HasExactMoments", "TestFunction",
           "on_leading_block", "wrapped_references"]

TestFunction = Callable[[Tensor], Tensor]
"""A test function ``g``: states ``(P, D) -> (P,)``."""


class _OnLeadingBlock:
    """``g`` applied to the first ``dim`` coordinates of a state."""

    def __init__(self, g: TestFunction, dim: int):
        self.g, self.dim = g, dim

    def __call__(self, z: Tensor) -> Tensor:
        return self.g(z[:, : self.dim])


def on_leading_block(test_functions: dict[str, TestFunction], dim: int) -> dict[str, TestFunction]:
    """The test functions of a base problem applied to the first ``dim`` coordinates of a larger
    state (the position ``x`` of ``(x, v)``, ``(x, u)``, ``(x, m, u)``)."""
    return {name: _OnLeadingBlock(g, dim) for name, g in test_functions.items()}


class Algorithm(abc.ABC):
    """A stochastic training algorithm and its stochastic modified equation (SME).

    A plug-in implements one step of the discrete algorithm for a batch of paths and returns its
    SME as an :class:`smetool.SDE`. The time scaling is Li, Tai & E's: step ``k`` of the algorithm
    with learning rate ``lr`` corresponds to SDE time ``t = k · lr``, so a horizon ``T`` means
    ``T / lr`` steps. :func:`smetool.verify` works with any object that meets this contract; a
    :class:`~smetool.algorithms.PluginSpec` makes it a command (``smetool verify NAME``), from
    smetool or from another package through the ``smetool.plugins`` entry-point group.

    Attributes
    ----------
    name : str
        The plug-in's name (``smetool verify NAME``); the class name when a subclass sets none.
    references : tuple of Reference
        The papers the algorithm and its SME come from (:func:`smetool.citation`,
        ``citation.bib``).
    sme_orders : tuple of int
        The SME orders :meth:`sme` provides (e.g. ``(1, 2)``).

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and adaptive stochastic gradient
    algorithms", ICML 2017; "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I: mathematical foundations", JMLR 20 (2019).
    """

    name: ClassVar[str] = ""
    references: ClassVar[tuple[Reference, ...]] = (LI_TAI_E_2019,)
    sme_orders: ClassVar[tuple[int, ...]] = (1,)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            cls.name = cls.__name__

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

    def cited_references(self) -> tuple[Reference, ...]:
        """The references of this object: its class's, and those of the objects it wraps.

        Wrappers (SVAG, momentum, adaptive methods on a base problem) add their base's.
        """
        return tuple(type(self).references)

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


class HasExactMoments(abc.ABC):
    """A plug-in whose discrete iterates and SME have exact (closed-form) moments.

    Declared by the plug-ins on linear–quadratic problems; :mod:`smetool.exact` computes their
    weak errors without Monte Carlo.
    """

    @abc.abstractmethod
    def exact_moments(self) -> Any:
        """The exact-moment model (a :class:`~smetool.exact.LinearMomentModel`)."""


def wrapped_references(wrapper: Algorithm, base: Algorithm) -> tuple[Reference, ...]:
    """The references of a wrapper followed by those of its base (each once)."""
    return unique_references([type(wrapper).references, base.cited_references()])
