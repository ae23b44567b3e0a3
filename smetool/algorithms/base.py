"""The plug-in contract: a batched discrete training algorithm paired with its SME."""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019, Reference, unique_references
from ..checks import check_positive_int
from ..sde import SDE, NoiseFree, TimeChanged

__all__ = ["Algorithm", "NegativeControl", "SMEPart", "Perturbation",
           "StochasticGradientAlgorithm", "SeparableNoise", "SeparableStochasticGradient",
           "HasExactMoments", "TestFunction", "on_leading_block", "wrapped_references",
           "start_on_every_path"]

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


def start_on_every_path(x0: Tensor, n_paths: int, *, dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None,
                        owner: str | None = None) -> Tensor:
    """``x0 (D,)`` repeated on ``n_paths`` paths, ``(P, D)``, a fresh tensor; ``dtype`` and
    ``device`` default to ``x0``'s (the body of most plug-ins' ``initial_state``).

    Raises
    ------
    ValueError
        ``n_paths`` not an integer ≥ 1 (the message names ``owner`` when given).
    """
    n_paths = check_positive_int(n_paths, "n_paths", owner)
    start = x0.to(dtype=x0.dtype if dtype is None else dtype,
                  device=x0.device if device is None else device)
    return start.unsqueeze(0).repeat(n_paths, 1)


class SMEPart(enum.Enum):
    """A part of an SME whose error a verification can size (its detection limit)."""

    NOISE_COVARIANCE = "noise covariance Σ"
    DRIFT_CORRECTION = "order-2 drift correction"


@dataclass(frozen=True)
class Perturbation:
    """What a negative control changes in the SME it is derived from: ``part`` multiplied by
    ``1 + change`` (``change = −1``: removed).

    :func:`smetool.verify` turns the control's weak errors into the check's detection limit for
    that part: the ``O(lr^{p−1})`` coefficient of a weak error is linear in the noise covariance
    and in the drift correction, so the control measures its sensitivity exactly.
    """

    part: SMEPart
    change: float


@dataclass(frozen=True)
class NegativeControl:
    """A wrong SME that a verification must reject: run against the same discrete paths, on the
    same random numbers as the SME, its weak error must show ``slope`` instead of the tested order.

    Attributes
    ----------
    name : str
        Short, for tables (``"order-1 SME"``, ``"no R_1"``).
    sde : SDE
        The wrong SME, in the time of the SME (``t = k · lr``).
    slope : float
        The weak order it shows (0 for an ``O(1)`` error).
    why : str
        One line: what is wrong with it and why a right verification must tell it apart.
    perturbation : Perturbation, optional
        When the control is the tested SME with one part scaled (e.g. the noise-free flow: the
        noise covariance times 0), the detection limit for that part is measured from it.
    """

    name: str
    sde: SDE
    slope: float
    why: str
    perturbation: Perturbation | None = None


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
        # A mix-in's concrete step (SeparableNoise's) listed after Algorithm among the bases is
        # shadowed by the abstract Algorithm.step; take the first concrete one in the MRO so the
        # bases may come in either order. ABCMeta computes the abstract methods after this hook.
        if getattr(cls.step, "__isabstractmethod__", False):
            concrete = [k.__dict__["step"] for k in cls.__mro__ if "step" in k.__dict__
                        and not getattr(k.__dict__["step"], "__isabstractmethod__", False)]
            if concrete:
                cls.step = concrete[0]  # type: ignore[method-assign]

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

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """Wrong SMEs that a verification of the order-``order`` SME at ``lr`` must reject.

        The default, for an order-2 check of a plug-in that also has an order-1 SME: the
        order-1 SME and the noise-free flow of the order-2 drift, both of weak order 1 (the first
        misses the ``O(ε)`` drift correction, the second the noise). The default for an order-1
        check: the SME in the wrong time convention
        (:class:`~smetool.sde.TimeChanged` at half speed, ``t = k ε / 2``), an ``O(1)`` drift
        error. At order 1 the noise covariance does not enter the leading error, so no SME that
        differs only in its noise can fail an order-1 check: its controls are drift errors, and
        plug-ins declare more specific ones (e.g. dropout: the flow without its implicit
        regularizer).
        """
        if order == 1:
            return (NegativeControl("half-speed time", TimeChanged(self.sme(lr, 1), 0.5), 0.0,
                                    "the SME in the time convention t = k lr/2 (drift and noise "
                                    "covariance halved): an O(1) drift error"),)
        if order != 2 or 1 not in self.sme_orders:
            return ()
        sme2 = self.sme(lr, 2)
        return (
            NegativeControl("order-1 SME", self.sme(lr, 1), 1.0,
                            "misses the O(lr) drift correction −(lr/4)∇‖∇f‖²",
                            Perturbation(SMEPart.DRIFT_CORRECTION, -1.0)),
            NegativeControl("noise-free", NoiseFree(sme2), 1.0,
                            "the order-2 drift without noise: misses the O(lr) effect of Σ",
                            Perturbation(SMEPart.NOISE_COVARIANCE, -1.0)),
        )

    def cited_references(self) -> tuple[Reference, ...]:
        """The references of this object: its class's, and those of the objects it wraps.

        Wrappers (SVAG, momentum, adaptive methods on a base problem) add their base's.
        """
        return tuple(type(self).references)

    def plan_notes(self, lrs: list[float], horizon: float, n_paths: int, order: int,
                   steps_per_lr: int) -> list[str]:
        """Lines that ``smetool verify`` prints before it runs: what the plug-in models and what
        it ignores, and whether the planned run can resolve the errors (default: none).

        Parameters
        ----------
        lrs : list of float
        horizon : float
            ``T`` in SDE time.
        n_paths : int
            Paths per side and learning rate.
        order : int
            The SME order to check.
        steps_per_lr : int
            SME steps per learning rate.
        """
        return []

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


class SeparableNoise(abc.ABC):
    """A discrete algorithm whose randomness is drawn apart from the state it acts on.

    This is what the small-noise control variates of :func:`smetool.verify` need from the
    discrete side (:mod:`smetool.montecarlo.control`): the noise ``ω_k`` of step ``k`` is drawn
    once (:meth:`draw`, independent of the state) and the step applied to it at two points, the
    path ``θ_k`` and the noise-free path ``θ̄_k`` (:meth:`step_with`); :meth:`mean_step` is the
    exact expectation over ``ω``, and :meth:`step_covariance` its exact covariance where known.
    The tangent ``δ_{k+1} = J δ_k + (step_with(θ̄_k, ω_k) − mean_step(θ̄_k))`` (``J`` the Jacobian
    of :meth:`mean_step` at ``θ̄_k``, by :func:`torch.func.jvp`) is then linear in the noise with
    deterministic coefficients, so the control variates built from it have mean exactly zero.

    Contract: ``step(x, lr, g)`` must equal ``step_with(x, lr, draw(P, lr, g, ...))`` draw for
    draw (the default :meth:`step` is exactly that), and :meth:`mean_step` must be
    ``E_ω step_with(x, lr, ω)`` *exactly*: an approximate mean biases the estimate.

    Mix it into an :class:`Algorithm` subclass, in either order (``class MyAlgo(SeparableNoise,
    Algorithm)``, as :class:`~smetool.algorithms.signsgd.SignSGD`): its :meth:`step` is the
    class's step unless the class defines one.
    """

    @abc.abstractmethod
    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Any:
        """The randomness of one step for ``n_paths`` paths (a tensor or a tuple of tensors,
        indexed by path along the first axis), drawn from ``generator`` only."""

    @abc.abstractmethod
    def step_with(self, x: Tensor, lr: float, noise: Any) -> Tensor:
        """One step with the given randomness: ``(P, D) -> (P, D)``."""

    @abc.abstractmethod
    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        """``E_ω step_with(x, lr, ω)``, exactly: ``(P, D) -> (P, D)``."""

    def step_covariance(self, x: Tensor, lr: float) -> Tensor | None:
        """``Cov_ω step_with(x, lr, ω)``, ``(P, D, D)``, or ``None`` when it is not known (the
        quadratic control variate then is not used)."""
        return None

    def has_exact_mean(self) -> bool:
        """Whether :meth:`mean_step` is exact for this instance (default ``True``). An instance
        whose noise law has no closed-form mean step (e.g. Gaussian noise through a nonlinear
        step) returns ``False`` and runs without control variates on the discrete side."""
        return True

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One step: :meth:`step_with` applied to a fresh :meth:`draw`."""
        return self.step_with(x, lr, self.draw(x.shape[0], lr, generator, dtype=x.dtype,
                                               device=x.device))


class SeparableStochasticGradient(StochasticGradientAlgorithm, SeparableNoise):
    """A stochastic-gradient algorithm ``x ← x − lr g(x; ξ)`` whose ``ξ`` is drawn apart from
    ``x``: implement the gradient-level methods and the :class:`SeparableNoise` contract (and
    :meth:`stochastic_gradient`) follow.
    """

    @abc.abstractmethod
    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> Any:
        """``ξ`` for ``n_paths`` paths (a mask, minibatch indices, …)."""

    @abc.abstractmethod
    def gradient_with(self, x: Tensor, noise: Any) -> Tensor:
        """``g(x; ξ)``: ``(P, D) -> (P, D)``."""

    @abc.abstractmethod
    def mean_gradient(self, x: Tensor) -> Tensor:
        """``E_ξ g(x; ξ)``, exactly: ``(P, D) -> (P, D)``."""

    def gradient_covariance(self, x: Tensor) -> Tensor | None:
        """``Cov_ξ g(x; ξ)``, ``(P, D, D)``, or ``None`` when unknown."""
        return None

    def stochastic_gradient(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """``g(x; ξ)`` with a fresh ``ξ`` per path."""
        return self.gradient_with(x, self.draw_gradient_noise(x.shape[0], generator,
                                                              dtype=x.dtype, device=x.device))

    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Any:
        return self.draw_gradient_noise(n_paths, generator, dtype=dtype, device=device)

    def step_with(self, x: Tensor, lr: float, noise: Any) -> Tensor:
        return x - lr * self.gradient_with(x, noise)

    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        return x - lr * self.mean_gradient(x)

    def step_covariance(self, x: Tensor, lr: float) -> Tensor | None:
        cov = self.gradient_covariance(x)
        return None if cov is None else lr * lr * cov

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

    def exact_weak_errors(self, lrs: Any, horizon: float, order: int) -> dict[str, list[float]]:
        """``E g(discrete) − E g(exact SME)`` at each learning rate, for the default test
        functions the exact model covers (by name). The default asks :meth:`exact_moments`'
        ``weak_errors`` from the plug-in's initial state; :func:`smetool.verify`'s errors must
        agree with these within their standard errors (the test suite and the validation page
        check it)."""
        model = self.exact_moments()
        if not isinstance(self, Algorithm):
            raise TypeError(f"{type(self).__name__}: HasExactMoments must be mixed into an Algorithm.")
        z0 = self.initial_state(1, dtype=torch.float64)[0].cpu().numpy()
        errors = model.weak_errors(z0, list(lrs), float(horizon), orders=[int(order)])
        wanted = self.test_functions()
        return {name: [float(v) for v in errors.series(name, int(order))]
                for name in errors.names if name in wanted}


def wrapped_references(wrapper: Algorithm, base: Algorithm) -> tuple[Reference, ...]:
    """The references of a wrapper followed by those of its base (each once)."""
    return unique_references([type(wrapper).references, base.cited_references()])
