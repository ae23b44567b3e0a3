"""SVAG: stochastic variance amplified gradient, an algorithm that converges to an SGD-type SME.

Given a stochastic-gradient algorithm ``x ← x − η g(x; ξ)`` with mean ``E g = ∇f`` and covariance
``Σ``, SVAG with amplification ``l ≥ 1`` takes steps of size ``η / l`` with the combination of two
independent draws

    ``g_l = c₊ g(x; ξ₁) + c₋ g(x; ξ₂)``,   ``c± = (1 ± √(2l − 1)) / 2``.

``c₊ + c₋ = 1`` keeps the mean ``∇f`` and ``c₊² + c₋² = l`` scales the covariance to ``l Σ``, so
one step has drift ``(η/l) ∇f`` and noise covariance ``(η/l)² l Σ = (η/l) · η Σ``: in time
``t = k η / l`` the iterates approach the SME of the base algorithm at learning rate ``η``,

    ``dX = −∇f(X) dt + √η Σ(X)^{1/2} dW``,

with a weak error ``O(1/l)`` (Li, Malladi & Arora 2021). Under the
:class:`~smetool.algorithms.Algorithm` contract the ``lr`` of a step is the SVAG step
``τ = η / l`` (so ``l = η / τ``) and the SME is the same for every ``τ``; :func:`smetool.verify`
then measures the weak error against ``τ`` and its order 1 is the paper's ``O(1/l)`` rate.

The point of SVAG is that it reaches the SME by simulating the algorithm only — no noise
covariance, factor or sampler is needed — so it works for any base that can draw stochastic
gradients: mini-batch SGD (:class:`~smetool.algorithms.sgd.FiniteSumSGD`) and dropout GD
(:class:`~smetool.algorithms.dropout.DropoutAlgorithm`, two independent masks per step).

References
----------
Z. Li, S. Malladi, S. Arora, "On the validity of modeling SGD with stochastic differential
equations (SDEs)", NeurIPS 2021.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..bibliography import LI_MALLADI_ARORA_2021, LI_TAI_E_2019, ZHANG_2024_DROPOUT, Reference
from ..checks import check_positive
from ..exact import SVAGMoments, svag_amplification, svag_coefficients
from ..sde import SDE, NoiseFree
from .base import (
    Algorithm,
    HasExactMoments,
    NegativeControl,
    SeparableNoise,
    SeparableStochasticGradient,
    StochasticGradientAlgorithm,
    TestFunction,
    wrapped_references,
)
from .dropout import KEEP_PROB, WIDTH, DropoutAlgorithm
from .sgd import BATCH_SIZE, SGDLeastSquares
from .spec import Option, PluginSpec, positive_option

__all__ = ["SVAG", "SeparableSVAG", "svag_coefficients", "svag_amplification", "PLUGINS"]

class SVAG(Algorithm):
    """SVAG on a stochastic-gradient base algorithm, converging to the base's order-1 SME.

    Parameters
    ----------
    base : StochasticGradientAlgorithm
        Any plug-in that draws unbiased stochastic gradients (SGD, dropout GD, a user's).
    base_lr : float
        ``η``, the learning rate whose SME is the target. A step ``τ`` of SVAG uses the
        amplification ``l = η / τ``, which must be ≥ 1 (``τ ≤ η``).

    Raises
    ------
    TypeError
        If ``base`` is not a :class:`StochasticGradientAlgorithm`.
    ValueError
        If ``base_lr`` is not a positive finite number.

    References
    ----------
    Li, Malladi & Arora, NeurIPS 2021.

    Examples
    --------
    >>> from smetool.algorithms import SGDLeastSquares
    >>> svag = SVAG(SGDLeastSquares.default(), base_lr=0.25)
    >>> x = svag.step(svag.initial_state(4), 0.25 / 8, torch.Generator().manual_seed(0))
    >>> svag.amplification(0.25 / 8)
    8.0
    """

    name = "svag"
    references = (LI_MALLADI_ARORA_2021,)
    sme_orders = (1,)

    def __new__(cls, base: StochasticGradientAlgorithm, base_lr: float) -> SVAG:
        # A base whose noise is drawn apart from the state makes SVAG's too: then the instance is
        # a SeparableSVAG, which the control variates of `verify` can use.
        if cls is SVAG and isinstance(base, SeparableStochasticGradient):
            return super().__new__(SeparableSVAG)
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple[StochasticGradientAlgorithm, float]:
        return self.base, self.base_lr  # pickling calls __new__ with these

    def __init__(self, base: StochasticGradientAlgorithm, base_lr: float):
        if not isinstance(base, StochasticGradientAlgorithm):
            raise TypeError(
                f"SVAG: `base` must be a StochasticGradientAlgorithm (one that draws stochastic "
                f"gradients, e.g. FiniteSumSGD or DropoutAlgorithm); got {type(base).__name__}."
            )
        self.base = base
        self.base_lr = check_positive(base_lr, "base_lr", "SVAG")

    def amplification(self, lr: float) -> float:
        """``l = base_lr / lr`` for the SVAG step ``lr`` (see :func:`svag_amplification`)."""
        return svag_amplification(self.base_lr, lr, "SVAG")

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """The base's initial state, ``(P, D)``."""
        return self.base.initial_state(n_paths, dtype=dtype, device=device)

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """``x − lr (c₊ g(x; ξ₁) + c₋ g(x; ξ₂))`` with two independent draws per path."""
        c_plus, c_minus = svag_coefficients(self.amplification(lr))
        g1 = self.base.stochastic_gradient(x, generator)
        g2 = self.base.stochastic_gradient(x, generator)
        return x - lr * (c_plus * g1 + c_minus * g2)

    def sme(self, lr: float, order: int = 1) -> SDE:
        """The base's order-1 SME at learning rate ``base_lr`` (the same SDE for every ``lr``)."""
        self.amplification(lr)
        if isinstance(order, bool) or order != 1:
            raise ValueError(
                f"SVAG: `order` must be 1 (SVAG approximates the order-1 SME with error O(1/l)); "
                f"got {order!r}."
            )
        return self.base.sme(self.base_lr, 1)

    def test_functions(self) -> dict[str, TestFunction]:
        """The base's test functions."""
        return self.base.test_functions()

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The noise-free flow of the SME's drift. SVAG converges, as ``lr = base_lr/l → 0``, to
        the SME at ``base_lr`` *with* its noise ``√base_lr Σ^{1/2}``: unlike an order-1 check of
        the SME in ``lr``, here the noise enters at ``O(1)``, so the flow keeps an ``O(1)`` error
        (slope 0) wherever ``Σ`` moves a test function's mean."""
        return (NegativeControl("noise-free", NoiseFree(self.sme(lr, order)), 0.0,
                                "the SME's drift without its noise, which SVAG keeps at O(1)"),)

    def exact_moments(self) -> SVAGMoments:
        """:class:`~smetool.exact.SVAGMoments` when the base has exact moments.

        Raises
        ------
        TypeError
            When the base has none.
        """
        if not isinstance(self.base, HasExactMoments):
            raise TypeError(f"SVAG: the base {self.base!r} has no exact moments.")
        return SVAGMoments(self.base.exact_moments(), self.base_lr)

    def cited_references(self) -> tuple[Reference, ...]:
        """SVAG's paper and the base's references."""
        return wrapped_references(self, self.base)

    def __repr__(self) -> str:
        return f"SVAG({self.base!r}, base_lr={self.base_lr:g})"


class SeparableSVAG(SeparableNoise, SVAG):
    """SVAG on a :class:`~smetool.algorithms.SeparableStochasticGradient` base (what ``SVAG(base,
    base_lr)`` returns for such a base): one step draws the base's noise twice, its mean is the
    base's mean step and its covariance ``lr² (c₊² + c₋²) Σ = lr² l Σ``, exactly.

    References
    ----------
    Li, Malladi & Arora, NeurIPS 2021 (the SVAG step and its covariance).
    """

    base: SeparableStochasticGradient

    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Any:
        """The base's noise for the two gradients of one step."""
        first = self.base.draw_gradient_noise(n_paths, generator, dtype=dtype, device=device)
        return first, self.base.draw_gradient_noise(n_paths, generator, dtype=dtype, device=device)

    def step_with(self, x: Tensor, lr: float, noise: Any) -> Tensor:
        c_plus, c_minus = svag_coefficients(self.amplification(lr))
        g1 = self.base.gradient_with(x, noise[0])
        g2 = self.base.gradient_with(x, noise[1])
        return x - lr * (c_plus * g1 + c_minus * g2)

    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        self.amplification(lr)
        return x - lr * self.base.mean_gradient(x)

    def step_covariance(self, x: Tensor, lr: float) -> Tensor | None:
        sigma = self.base.gradient_covariance(x)
        return None if sigma is None else lr * lr * self.amplification(lr) * sigma

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        return SVAG.step(self, x, lr, generator)


def _svag_sgd(*, dtype: torch.dtype, device: Any, base_lr: float, batch_size: int) -> SVAG:
    return SVAG(SGDLeastSquares.default(dtype, device=device, batch_size=batch_size), base_lr)


def _svag_dropout(*, dtype: torch.dtype, device: Any, base_lr: float, keep_prob: float,
                  width: int) -> SVAG:
    base = DropoutAlgorithm.verification_default(dtype=dtype, device=device, keep_prob=keep_prob,
                                                 width=width)
    return SVAG(base, base_lr)


def _base_lr_option(default: float) -> Option:
    return Option("base_lr", positive_option("base_lr"), default,
                  "SVAG: the learning rate whose SME is the target (each step lr uses "
                  "amplification base_lr/lr)")


PLUGINS = (
    PluginSpec(
        name="svag",
        factory=_svag_sgd,
        description="SVAG (two amplified SGD gradients, step base_lr/l) on the least-squares "
        "problem, against the SGD SME at base_lr = 0.5 (Li, Malladi & Arora, 2021)",
        orders=(1,),
        lrs=(0.25, 0.125, 0.0625, 0.03125, 0.015625),
        horizon=1.0,
        n_paths=40_000,
        steps_per_lr=4,
        options=(_base_lr_option(0.5), BATCH_SIZE),
        references=(LI_MALLADI_ARORA_2021, LI_TAI_E_2019),
        algorithm=SVAG,
        describe=lambda alg: {"problem": repr(alg)},
    ),
    PluginSpec(
        name="svag-dropout",
        factory=_svag_dropout,
        description="SVAG with two dropout masks per step on the dropout problem, against the "
        "dropout SME at base_lr = 0.04 (Li, Malladi & Arora, 2021)",
        orders=(1,),
        lrs=(0.02, 0.01, 0.005, 0.0025),
        horizon=0.2,
        n_paths=1_000,
        steps_per_lr=2,
        options=(_base_lr_option(0.04), KEEP_PROB, WIDTH),
        references=(LI_MALLADI_ARORA_2021, ZHANG_2024_DROPOUT),
        algorithm=SVAG,
        describe=lambda alg: {"problem": repr(alg.base.problem), "base_lr": alg.base_lr},
    ),
)
"""The ``svag`` and ``svag-dropout`` plug-ins of the command line."""

