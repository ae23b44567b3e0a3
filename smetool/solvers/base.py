"""The solver protocol: one step of a scheme, with its declared orders and supported noise kinds."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from ..bibliography import Reference
from ..brownian import Increments
from ..noise import apply_diffusion
from ..sde import SDE, NoiseKind, SampledDriftSDE

__all__ = ["Solver", "UnsupportedError", "noise_increment"]


def noise_increment(
    sde: SDE, t: float, x: Tensor, dW: Tensor | None, h: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``σ(t, x) dW`` (GENERAL noise through :meth:`SDE.diffusion_product
    <smetool.SDE.diffusion_product>`, which an SDE may compute without forming ``σ``).

    For SAMPLED noise (``dW is None``) it is ``√h ζ`` with ``ζ = sde.sample_noise(t, x,
    generator)``, the Euler–Maruyama noise term with the sampled law.
    """
    if sde.noise_kind is NoiseKind.SAMPLED:
        if h is None or generator is None:
            raise ValueError("SAMPLED noise needs the step `h` and a `generator`.")
        return math.sqrt(h) * sde.sample_noise(t, x, generator)
    if dW is None:
        raise ValueError(f"noise_kind={sde.noise_kind.value!r} needs Brownian increments `dW`.")
    if sde.noise_kind is NoiseKind.GENERAL:
        return sde.diffusion_product(t, x, dW)
    return apply_diffusion(sde, sde.diffusion(t, x), dW)


class UnsupportedError(ValueError):
    """A solver was asked for an SDE or increments it cannot integrate at its declared order."""


class Solver(abc.ABC):
    """A one-step scheme for Itô SDEs, batched over paths.

    Subclasses declare, as class attributes, what they can do; :meth:`check` refuses anything else
    *before* the time loop starts, with the reason and an alternative.

    Attributes
    ----------
    name : str
        The name used on the command line.
    strong_order : float or None
        Strong order (``None``: not a strong scheme, e.g. with non-Gaussian increments).
    weak_order : float
        Weak order for smooth coefficients and test functions.
    strong_orders_by_kind, weak_orders_by_kind : mapping of NoiseKind to float or None
        Where a noise kind changes an order (Euler–Maruyama is strong order 1 with additive noise;
        SAMPLED noise has no Brownian path, so no strong order): read them through
        :meth:`strong_order_for` and :meth:`weak_order_for`, which the convergence tests use.
    noise_kinds : frozenset of NoiseKind
        Noise kinds it integrates at its declared orders.
    min_matched_moments : int
        Moments of the increments that must match the Gaussian ones to keep ``weak_order``.
    reference : str
        The source of the scheme, in words.
    references : tuple of Reference
        The same as bibliography entries (:func:`smetool.citation`).
    samples_drift : bool
        Whether it integrates a :class:`~smetool.sde.SampledDriftSDE` (drift known only through
        unbiased estimates); only Euler–Maruyama does.
    """

    name: ClassVar[str]
    strong_order: ClassVar[float | None]
    weak_order: ClassVar[float]
    noise_kinds: ClassVar[frozenset[NoiseKind]]
    strong_orders_by_kind: ClassVar[Mapping[NoiseKind, float | None]] = {}
    weak_orders_by_kind: ClassVar[Mapping[NoiseKind, float]] = {}
    min_matched_moments: ClassVar[int] = 3
    needs_gaussian: ClassVar[bool] = False
    reference: ClassVar[str] = ""
    references: ClassVar[tuple[Reference, ...]] = ()
    alternative: ClassVar[str] = "EulerMaruyama()"
    samples_drift: ClassVar[bool] = False

    def check(self, sde: SDE, increments: Increments) -> None:
        """Refuse an SDE or increment source that this solver cannot handle.

        Raises
        ------
        UnsupportedError
            Naming the solver, the problem and what to use instead.
        """
        if isinstance(sde, SampledDriftSDE) and not self.samples_drift:
            raise UnsupportedError(
                f"{self!r} needs a closed-form drift; {type(sde).__name__} only gives unbiased "
                "drift estimates. Use EulerMaruyama() (method='euler'), weak order 1 for it.")
        if sde.noise_kind not in self.noise_kinds:
            kinds = ", ".join(sorted(k.value for k in self.noise_kinds))
            raise UnsupportedError(
                f"{self!r} does not support noise_kind={sde.noise_kind.value!r} (it supports "
                f"{kinds}); use {self.alternative} instead."
            )
        if self.needs_gaussian and not increments.gaussian:
            raise UnsupportedError(
                f"{self!r} is a strong scheme and needs Gaussian increments; got {increments!r}. "
                "Use increments='gaussian' (or a torchsde Brownian object)."
            )
        if sde.noise_kind is not NoiseKind.SAMPLED and increments.matched_moments < self.min_matched_moments:
            raise UnsupportedError(
                f"{self!r} needs increments matching {self.min_matched_moments} Gaussian moments "
                f"to keep weak order {self.weak_order}; {increments!r} matches "
                f"{increments.matched_moments}. Use increments='gaussian' or 'three_point'."
            )

    @abc.abstractmethod
    def step(
        self, sde: SDE, t: float, x: Tensor, h: float, dW: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Advance ``x (P, D)`` from ``t`` to ``t + h`` with Brownian increments ``dW (P, M)``.

        ``dW`` is ``None`` for SAMPLED noise; ``generator`` serves any extra randomness the scheme
        needs (e.g. the two-point variables of a weak order-2 scheme). A step returns a new tensor
        and never writes into ``x``: :func:`smetool.solve` keeps earlier states by reference to
        replay a window of steps when it looks for the first non-finite one.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def step_memory(self, kind: NoiseKind, dim: int, noise_dim: int, itemsize: int) -> int:
        """A lower bound on the bytes one step allocates per path for an SDE of noise kind
        ``kind``, state dimension ``dim`` and Brownian dimension ``noise_dim`` (0: none known
        beyond the state). Used to refuse, before anything runs, a scheme that cannot fit one
        path; the chunk size itself comes from a measured probe."""
        return 0

    def weak_order_for(self, kind: NoiseKind) -> float:
        """The weak order declared for SDEs of noise kind ``kind``."""
        return self.weak_orders_by_kind.get(kind, self.weak_order)

    def strong_order_for(self, kind: NoiseKind) -> float | None:
        """The strong order declared for SDEs of noise kind ``kind`` (``None``: none)."""
        return self.strong_orders_by_kind.get(kind, self.strong_order)

    def describe(self) -> dict:
        """Orders, noise kinds and reference, for ``smetool list`` and reports."""
        kinds = sorted(self.noise_kinds, key=lambda k: k.value)
        return {
            "name": self.name,
            "strong_order": self.strong_order,
            "weak_order": self.weak_order,
            "noise_kinds": [k.value for k in kinds],
            "orders_by_noise_kind": {
                k.value: {"strong": self.strong_order_for(k), "weak": self.weak_order_for(k)}
                for k in kinds
            },
            "reference": self.reference,
        }
