"""The SME of any update rule ``x_{k+1} = x_k + lr · A(x_k, ξ_k)``, derived: :func:`derive_sme`.

With ``ξ`` drawn afresh at every step from a law independent of ``x`` and of ``lr``, write
``b₀(x) = E_ξ A(x, ξ)`` and ``Σ(x) = Cov_ξ A(x, ξ)``. Matching the first moments of one step of
the update with those of the SDE over one time ``lr`` (Li, Tai & E 2019, Theorem 3 with
Milstein's weak-convergence theorem) gives

* order 1: ``dX = b₀(X) dt + √lr Σ(X)^{1/2} dW``;
* order 2: ``dX = [b₀ − (lr/2)(∇b₀) b₀](X) dt + √lr Σ(X)^{1/2} dW``.

The derivation, in the SDE time ``t = k lr`` (``Δ = x_1 − x``, ``Δ̃ = X_lr − x``, ``L`` the
generator ``b·∇ + (lr/2) Σ : ∇²``): the update has ``E Δ = lr b₀``, ``E ΔΔᵀ = lr²(Σ + b₀b₀ᵀ)``
and ``E Δ^{⊗3} = O(lr³)``, exactly. The SDE with drift ``b = b₀ + lr b₁`` has
``E Δ̃ = lr b + (lr²/2) L b + O(lr³) = lr b₀ + lr²[b₁ + ½ (∇b₀) b₀] + O(lr³)`` (the second-order
part of ``L`` carries a further ``lr``), ``E Δ̃Δ̃ᵀ = lr · lr Σ + lr² b₀b₀ᵀ + O(lr³)`` (its own
drift contributes ``lr² b₀b₀ᵀ``, which the update's second moment also has; every other term
carries ``lr Σ`` times ``lr²``) and ``E Δ̃^{⊗3} = O(lr³)``. Order 1 needs the moments to
``O(lr²)``: ``b₁`` is free (take 0). Order 2 needs them to ``O(lr³)``: ``b₁ = −½ (∇b₀) b₀``, and
no correction of ``Σ`` — the second moments already agree to ``O(lr³)``. Milstein's theorem then
gives weak order 2 (order 1 with ``b₁ = 0``) over a fixed horizon.

Conditions (those of the theorem; smetool checks what can be checked at the initial point):
``ξ`` i.i.d. over steps, its law independent of ``x`` and ``lr``; ``A(·, ξ)`` smooth with
derivatives of polynomial growth and all moments of ``A`` finite (so ``Σ`` is finite); ``b₀`` and
``Σ^{1/2}`` Lipschitz; smooth test functions of polynomial growth; a fixed horizon ``T``.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient algorithms
I: mathematical foundations", JMLR 20 (2019). G. N. Milstein, "Weak approximation of solutions of
systems of stochastic differential equations", Theory Probab. Appl. 30 (1986).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_lr, check_positive, check_positive_int
from ..device import functorch_exclusive
from ..sde import SDE, NoiseKind, SampledDriftSDE
from .derive_batch import support_for
from .derive_checks import check_update
from .derive_core import DifferentiableUpdate, Update, check_law, check_order, evaluate
from .noise_laws import FiniteNoise, NoiseLaw, SampledNoise, Tree

__all__ = ["derive_sme", "DerivedSME", "SampledDerivedSME"]


class DerivedSME(SDE):
    """The SME of ``x + lr A(x, ξ)`` for a :class:`FiniteNoise` ``ξ``: every coefficient exact.

    * drift ``b₀`` (order 1) or ``b₀ − (lr/2)(∇b₀) b₀`` (order 2, one :func:`torch.func.jvp`
      of the exact ``b₀`` along ``b₀``);
    * GENERAL noise ``√lr F``, ``F = [√w_i (A(x, ξ_i) − b₀(x))]_{i ≤ S}`` ``(P, D, S)``: ``F Fᵀ = Σ``
      exactly, no ``D × D`` square root, and ``F`` is as smooth as ``A`` (so weak order-2 schemes
      apply). :meth:`diffusion_product` gives ``√lr F dW`` matrix-free, in the same pass as ``b₀``.

    Cost per evaluation: ``S`` evaluations of ``A`` per path (a jvp for the order-2 drift), in
    blocks of :data:`~smetool.algorithms.derive_core.CHUNK_ELEMENTS`. For a
    :class:`~smetool.algorithms.derive_batch.BatchMean` update the sums run over the examples of
    the mini-batch instead (``M = S_ζ n + S_ζ`` columns), exactly.

    Parameters
    ----------
    update : callable ``(x (N, D), ξ) -> A (N, D)``
        The increment per unit learning rate: the update is ``x + lr · update(x, ξ)``.
    law : FiniteNoise
    lr : float
    order : {1, 2}

    References
    ----------
    Li, Tai & E, JMLR 20 (2019); Milstein, Theory Probab. Appl. 30 (1986).
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, update: Update, law: FiniteNoise, lr: float, order: int = 1):
        self.update, self.law = update, law
        self.lr = check_lr(lr)
        self.order = check_order(order)
        self._support = support_for(update, law)
        self.noise_dim = self._support.noise_dim

    def mean(self, x: Tensor) -> Tensor:
        """``b₀(x) = E_ξ A(x, ξ)``, ``(P, D)``."""
        return self._support.mean(x)

    def covariance(self, x: Tensor) -> Tensor:
        """``Σ(x) = Cov_ξ A(x, ξ)``, ``(P, D, D)``."""
        return self._support.covariance(x)

    def correction(self, x: Tensor) -> Tensor:
        """``(∇b₀) b₀`` at ``x``, ``(P, D)`` (the order-2 drift is ``b₀ − (lr/2)`` this)."""
        return self._support.directional(x, self.mean(x))

    def drift(self, t: float, x: Tensor) -> Tensor:
        mean = self.mean(x)
        if self.order == 1:
            return mean
        return mean - 0.5 * self.lr * self._support.directional(x, mean)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return math.sqrt(self.lr) * self._support.factor(x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        return math.sqrt(self.lr) * self._support.mean_and_product(x, dW)[1]

    def euler_increment(self, t: float, x: Tensor, h: float, dW: Tensor) -> Tensor:
        mean, prod = self._support.mean_and_product(x, dW)
        drift = mean if self.order == 1 else mean - 0.5 * self.lr * self._support.directional(x, mean)
        return drift * h + math.sqrt(self.lr) * prod

    def __repr__(self) -> str:
        return f"DerivedSME(order={self.order}, lr={self.lr:g}, noise={self.law!r})"


class SampledDerivedSME(SampledDriftSDE):
    """The SME of ``x + lr A(x, ξ)`` for a :class:`SampledNoise` ``ξ``, integrated from draws
    (Euler–Maruyama only, weak order 1 in the SDE step ``h``), never forming ``Σ``.

    * ``sample_drift``: ``c [Ā − (lr/2) Ĉ]`` with ``Ā`` the mean of ``K`` draws of ``A``
      (unbiased for ``b₀``, covariance ``Σ/K``) and, at order 2, ``Ĉ`` the mean of ``K``
      products ``(∇A(x, ξ_i)) A(x, ξ_j)`` on independent fresh draws ``i ≠ j`` (unbiased for
      ``(∇b₀) b₀``, as ``E ∇A = ∇b₀`` for a law independent of ``x``);
    * ``sample_noise``: ``√(c lr/(2k)) Σ_{j ≤ k} (A(x, ξ_j) − A(x, ξ'_j))``, mean 0 and covariance
      exactly ``c lr Σ``;
    * ``drift_noise_ratio`` ``γ = c/(lr K)``: Euler–Maruyama steps ``x + h b̂ + √(h − γh²) ζ``,
      whose covariance is exactly ``c lr h Σ`` — the drift estimate's noise compensated. At order
      2 the correction's own estimation noise adds ``(c h lr/2)² Cov Ĉ`` per step, not
      compensated: ``O(h² lr²)`` per step, a weak error ``O(h lr²)``, one order of ``lr`` below
      an order-2 SME's own error when ``h ∝ lr``.

    ``c`` is ``speed`` (1; 1/2 for the half-speed negative control).

    Parameters
    ----------
    update, law, lr, order
        As :class:`DerivedSME`, with a :class:`SampledNoise`.
    drift_samples : int
        ``K``; the SME step must satisfy ``h ≤ lr K / c``.
    noise_pairs : int
        ``k``.
    speed : float
        ``c > 0``.
    """

    def __init__(self, update: Update, law: SampledNoise, lr: float, order: int = 1, *,
                 drift_samples: int = 1, noise_pairs: int = 1, speed: float = 1.0):
        self.update, self.law = update, law
        self.lr = check_lr(lr)
        self.order = check_order(order)
        self.drift_samples = check_positive_int(drift_samples, "drift_samples")
        self.noise_pairs = check_positive_int(noise_pairs, "noise_pairs")
        self.speed = check_positive(speed, "speed")

    @property
    def drift_noise_ratio(self) -> float:
        return self.speed / (self.lr * self.drift_samples)

    def _draws(self, x: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tree]:
        """``x`` repeated ``k`` times (row ``j P + p`` is path ``p``) and ``k P`` fresh draws."""
        xi = self.law.draw(k * x.shape[0], generator, dtype=x.dtype, device=x.device)
        return x.repeat(k, 1), xi

    def sample_drift(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        K, P = self.drift_samples, x.shape[0]
        xs, xi = self._draws(x, K, generator)
        mean = evaluate(self.update, xs, xi).reshape(K, P, -1).mean(dim=0)
        if self.order == 2:
            _, xi_i = self._draws(x, K, generator)
            _, xi_j = self._draws(x, K, generator)
            direction = evaluate(self.update, xs, xi_j)
            if isinstance(self.update, DifferentiableUpdate):
                jvp = self.update.directional(xs, xi_i, direction)
            else:
                jvp = functorch_exclusive(torch.func.jvp)(lambda y: self.update(y, xi_i), (xs,),
                                                          (direction,))[1]
            mean = mean - 0.5 * self.lr * jvp.reshape(K, P, -1).mean(dim=0)
        return self.speed * mean

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        k, P = self.noise_pairs, x.shape[0]
        xs, xi = self._draws(x, 2 * k, generator)
        A = evaluate(self.update, xs, xi).reshape(2 * k, P, -1)
        return math.sqrt(self.speed * self.lr / (2 * k)) * (A[0::2] - A[1::2]).sum(dim=0)

    def __repr__(self) -> str:
        speed = "" if self.speed == 1.0 else f", speed={self.speed:g}"
        return (f"SampledDerivedSME(order={self.order}, lr={self.lr:g}, noise={self.law!r}, "
                f"drift_samples={self.drift_samples}, noise_pairs={self.noise_pairs}{speed})")


def derive_sme(update: Update, noise: NoiseLaw, *, lr: float, order: int = 1,
               x0: Tensor | None = None, drift_samples: int = 1, noise_pairs: int = 1,
               check_form: bool = True) -> SDE:
    """The SME of the update ``x_{k+1} = x_k + lr · update(x_k, ξ_k)``, derived.

    ``update`` gives the **increment per unit learning rate** ``A(x, ξ)``, not the new iterate:
    for SGD ``A = −∇f_γ(x)``, for dropout GD ``A = −∇R_S^drop(x; η)``. With ``b₀ = E A`` and
    ``Σ = Cov A``, the SME of order 1 is ``dX = b₀ dt + √lr Σ^{1/2} dW`` and that of order 2
    ``dX = [b₀ − (lr/2)(∇b₀) b₀] dt + √lr Σ^{1/2} dW`` (Li, Tai & E 2019; the derivation and its
    conditions: :mod:`smetool.algorithms.derive` and ``docs/tutorial-derive-sme.md``).

    Parameters
    ----------
    update : callable ``(x (N, D), ξ) -> A (N, D)``
        Plain torch, batched over the rows of ``x`` and ``ξ`` (a draw of ``noise`` with ``N``
        rows); differentiable in ``x`` by :func:`torch.func.jvp` at order 2.
    noise : FiniteNoise or SampledNoise
        The law of ``ξ``, independent of ``x`` and ``lr``.
    lr : float
        The learning rate ``ε``; the SME runs in the time ``t = k ε``.
    order : {1, 2}
    x0 : Tensor, (D,) or (P, D), optional
        A state at which the conditions of the theorem that can be checked are checked
        (:func:`~smetool.algorithms.derive_checks.check_update`) before anything runs.
    drift_samples, noise_pairs : int
        ``K`` and ``k`` of :class:`SampledDerivedSME` (sampled noise only).
    check_form : bool
        With ``x0``: refuse an ``update`` whose Jacobian is the identity to 25 % (it returns the
        new iterate, not ``A``). Turn off for an ``A`` that really is close to ``x``.

    Returns
    -------
    SDE
        :class:`DerivedSME` (GENERAL noise, exact coefficients) for a :class:`FiniteNoise`,
        :class:`SampledDerivedSME` (SAMPLED noise, Euler–Maruyama) for a :class:`SampledNoise`.

    Raises
    ------
    TypeError
        ``update`` not callable; ``noise`` not a noise law (e.g. a function of ``lr``).
    ValueError
        Bad ``lr`` or ``order``; with ``x0``, an update the theorem does not cover (wrong shape,
        non-finite ``A`` and so ``Σ``, the new iterate instead of ``A``, not differentiable at
        order 2 — the message names the input).

    References
    ----------
    Q. Li, C. Tai, W. E, JMLR 20 (2019), Theorem 3; G. N. Milstein, Theory Probab. Appl. 30 (1986).

    Examples
    --------
    SGD on ``f = (1/4) Σ_i ½ (x − y_i)²`` with one example per step:

    >>> y = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    >>> sme = derive_sme(lambda x, i: -(x - y[i].unsqueeze(1)), FiniteNoise(torch.arange(4)),
    ...                  lr=0.1, order=2)
    >>> sme.drift(0.0, torch.zeros(1, 1, dtype=torch.float64))  # −(1 + lr/2)(x − 1.5)
    tensor([[1.5750]], dtype=torch.float64)
    """
    if not callable(update):
        raise TypeError(f"`update` must be callable (x, ξ) -> A; got {type(update).__name__}.")
    law = check_law(noise)
    lr = check_lr(lr)
    order = check_order(order)
    if x0 is not None:
        check_update(update, law, x0, order=order, check_form=check_form)
    if isinstance(law, FiniteNoise):
        return DerivedSME(update, law, lr, order)
    assert isinstance(law, SampledNoise)
    return SampledDerivedSME(update, law, lr, order, drift_samples=drift_samples,
                             noise_pairs=noise_pairs)

