"""A user's update rule paired with its derived SME, as a plug-in: :class:`DerivedAlgorithm`.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient algorithms
I: mathematical foundations", JMLR 20 (2019).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019, MILSTEIN_1986, Reference, unique_references
from ..checks import check_lr, check_positive_int, check_test_functions
from ..sde import SDE
from .base import Algorithm, NegativeControl, SeparableNoise, TestFunction, start_on_every_path
from .derive import DerivedSME, SampledDerivedSME, derive_sme
from .derive_batch import support_for
from .derive_checks import as_probe_state, check_update
from .derive_core import Update, check_law, check_order
from .noise_laws import FiniteNoise, NoiseLaw, SampledNoise, Tree
from .observables import Coordinate, SquaredNorm

__all__ = ["DerivedAlgorithm"]


class DerivedAlgorithm(SeparableNoise, Algorithm):
    """The update ``x_{k+1} = x_k + lr · update(x_k, ξ_k)`` and its SME from :func:`derive_sme`.

    A plug-in like the built-in ones: :func:`smetool.verify` and a
    :class:`~smetool.algorithms.PluginSpec` take it unchanged. It is a
    :class:`~smetool.algorithms.SeparableNoise` plug-in — ``ξ`` is drawn apart from the state —
    so with a :class:`FiniteNoise` the small-noise control variates apply on both sides:
    :meth:`mean_step` ``x + lr b₀`` and :meth:`step_covariance` ``lr² Σ`` are exact sums over the
    support. With a :class:`SampledNoise` the mean step has no closed form
    (:meth:`has_exact_mean` is ``False``), the SME is sampled (Euler–Maruyama) and the check runs
    without control variates.

    Parameters
    ----------
    update : callable ``(x (N, D), ξ) -> A (N, D)``
        The increment per unit learning rate (**not** the new iterate), plain torch, batched over
        rows, differentiable in ``x`` for the order-2 SME.
    noise : FiniteNoise or SampledNoise
        The law of ``ξ`` (independent of ``x`` and ``lr``).
    x0 : Tensor, (D,)
        The common initial point.
    test_functions : dict of str to callable, optional
        ``g: (P, D) -> (P,)``; default ``‖x‖²`` and ``x[0]``.
    name : str
        Of the plug-in (``smetool verify NAME`` when registered, tables, reports).
    references : sequence of Reference
        The papers of the algorithm (the derivation's, Li–Tai–E and Milstein, are added).
    drift_samples, noise_pairs : int
        ``K`` and ``k`` of the sampled SME (:class:`SampledDerivedSME`).
    check_form : bool
        See :func:`derive_sme`.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, or an update the theorem does not cover (checked at ``x0`` here for
        order 1, and on the first order-2 SME for differentiability).

    References
    ----------
    Li, Tai & E, JMLR 20 (2019); Milstein, Theory Probab. Appl. 30 (1986).

    Examples
    --------
    Label-noise gradient descent on a 1-D regression ``y_i = 2 u_i`` with noisy targets
    ``y_i + ξ_i``, ``ξ_i = ±0.5``:

    >>> u = torch.linspace(-1, 1, 4, dtype=torch.float64)
    >>> def update(x, signs):                      # A = −∇ ½ mean (x u − y − ξ)²
    ...     r = x * u - 2 * u - 0.5 * signs
    ...     return -(r * u).mean(dim=1, keepdim=True)
    >>> signs = torch.tensor([[a, b, c, d] for a in (-1., 1.) for b in (-1., 1.)
    ...                       for c in (-1., 1.) for d in (-1., 1.)], dtype=torch.float64)
    >>> algo = DerivedAlgorithm(update, FiniteNoise(signs), torch.zeros(1, dtype=torch.float64))
    >>> algo.sme(0.1, order=2).noise_dim
    16
    """

    name = "derived"
    references: ClassVar[tuple[Reference, ...]] = (LI_TAI_E_2019, MILSTEIN_1986)
    sme_orders: ClassVar[tuple[int, ...]] = (1, 2)

    def __init__(self, update: Update, noise: NoiseLaw, x0: Tensor,
                 test_functions: Mapping[str, TestFunction] | None = None, *,
                 name: str = "derived", references: Sequence[Reference] = (),
                 drift_samples: int = 1, noise_pairs: int = 1, check_form: bool = True):
        if not callable(update):
            raise TypeError(f"`update` must be callable (x, ξ) -> A; got {type(update).__name__}.")
        self.law = check_law(noise)
        self.update = update
        probe = as_probe_state(x0)
        if not isinstance(x0, Tensor) or x0.ndim != 1:
            raise ValueError(f"`x0` must have shape (D,); got {tuple(probe.shape)} rows.")
        self.x0 = x0.detach()
        self._tests: dict[str, TestFunction] = (
            {"norm_sq": SquaredNorm(), "x[0]": Coordinate(0)} if test_functions is None
            else check_test_functions(test_functions, name))
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string; got {name!r}.")
        self.name = name  # type: ignore[misc]  # an instance may name itself
        self._references = tuple(references)
        if not all(isinstance(r, Reference) for r in self._references):
            raise TypeError("`references` must hold smetool Reference objects.")
        self.drift_samples = check_positive_int(drift_samples, "drift_samples")
        self.noise_pairs = check_positive_int(noise_pairs, "noise_pairs")
        self.check_form = bool(check_form)
        check_update(update, self.law, self.x0, order=1, check_form=self.check_form)
        self._differentiable = False
        self._support = (support_for(update, self.law) if isinstance(self.law, FiniteNoise)
                         else None)

    # ----------------------------------------------------------------------------- the contract
    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``x0`` on every path, ``(P, D)`` (a fresh tensor)."""
        return start_on_every_path(self.x0, n_paths, dtype=dtype, device=device, owner=self.name)

    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Tree:
        """``ξ`` for ``n_paths`` paths, from ``generator`` (independent of ``lr`` and the state)."""
        return self.law.draw(n_paths, generator, dtype=dtype, device=device)

    def step_with(self, x: Tensor, lr: float, noise: Tree) -> Tensor:
        """``x + lr · update(x, ξ)``."""
        return x + check_lr(lr, self.name) * self.update(x, noise)

    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        """``x + lr b₀(x)``, an exact sum over the support (FiniteNoise only)."""
        if self._support is None:
            raise TypeError(f"{self.name}: a SampledNoise law has no exact mean step.")
        return x + lr * self._support.mean(x)

    def step_covariance(self, x: Tensor, lr: float) -> Tensor | None:
        """``lr² Σ(x)`` (FiniteNoise), ``None`` for a sampled law."""
        if self._support is None:
            return None
        return lr * lr * self._support.covariance(x)

    def has_exact_mean(self) -> bool:
        """``True`` for a :class:`FiniteNoise` law."""
        return self._support is not None

    def sme(self, lr: float, order: int = 1) -> SDE:
        """The derived SME (:func:`derive_sme`); the order-2 one is checked for differentiability
        at ``x0`` the first time."""
        order = check_order(order)
        if order == 2 and not self._differentiable:
            check_update(self.update, self.law, self.x0, order=2, check_form=False)
            self._differentiable = True
        return derive_sme(self.update, self.law, lr=lr, order=order,
                          drift_samples=self.drift_samples, noise_pairs=self.noise_pairs)

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The defaults of :class:`Algorithm` for a finite law; for a sampled one (no closed-form
        drift to run noise-free): the half-speed SME at order 1, the order-1 SME at order 2."""
        if isinstance(self.law, FiniteNoise):
            return super().negative_controls(lr, order)
        assert isinstance(self.law, SampledNoise)
        if order == 1:
            slow = SampledDerivedSME(self.update, self.law, lr, 1, drift_samples=self.drift_samples,
                                     noise_pairs=self.noise_pairs, speed=0.5)
            return (NegativeControl("half-speed time", slow, 0.0,
                                    "the SME in the time convention t = k lr/2: an O(1) drift "
                                    "error"),)
        return (NegativeControl("order-1 SME", self.sme(lr, 1), 1.0,
                                "misses the O(lr) drift correction −(lr/2)(∇b₀)b₀"),)

    def test_functions(self) -> dict[str, TestFunction]:
        return dict(self._tests)

    def cited_references(self) -> tuple[Reference, ...]:
        return unique_references([self._references, type(self).references])

    def exact_sme(self, lr: float, order: int = 1) -> DerivedSME:
        """The SME as a :class:`DerivedSME` (FiniteNoise only), with :meth:`DerivedSME.mean`,
        :meth:`~DerivedSME.covariance` and :meth:`~DerivedSME.correction` for analysis."""
        sde = self.sme(lr, order)
        if not isinstance(sde, DerivedSME):
            raise TypeError(f"{self.name}: a SampledNoise law has no exact SME.")
        return sde

    def __repr__(self) -> str:
        return f"DerivedAlgorithm(name={self.name!r}, D={self.x0.numel()}, noise={self.law!r})"

    def describe(self) -> dict[str, Any]:
        """For the JSON report: the law and the dimension."""
        return {"noise": repr(self.law), "D": int(self.x0.numel())}
