"""What the RMSprop and Adam plug-ins share: the noise model, the scaling and the state layout.

The SDEs are those of Malladi, Lyu, Panigrahi & Arora (2022).

**The noise model.** Adaptive methods have an SDE limit only when the gradient noise is large:
with learning rate ``η`` the stochastic gradient is ``g = ∇f(x) + σ ξ``, ``E ξ = 0``,
``Cov ξ = Σ(x)``, and the noise scale grows as ``σ = σ₀ / η`` (their "noisy gradient oracle with
scale parameter"). Here ``ξ = F(x) z`` with the factor ``F Fᵀ = Σ`` of a finite-sum problem
(:class:`~smetool.algorithms.sgd.FiniteSumSGD`: ``Σ`` is its mini-batch gradient covariance) and
``z`` standard Gaussian or Rademacher.

**The scaling** in which the SDE exists: ``1 − β = c η²`` for each decay rate,
``ε = ε₀ / η``, ``σ = σ₀ / η``, and one step is SDE time ``η²``. Under the
:class:`~smetool.algorithms.Algorithm` contract the ``lr`` of a step is that time step
``τ = η²``; :meth:`hyperparameters` gives the algorithm's own ``(η, β, ε, σ)`` for a ``τ``.
The second-moment state is stored as ``u = v / σ²`` so that the discrete state and the SDE state
are the same variables.

**RMSprop** ``v ← β v + (1 − β) g²``, ``x ← x − η g / (√v + ε)``; its SDE, state ``(x, u)``:

    ``dx = −P⁻¹ (∇f(x) dt + σ₀ F(x) dW)``,  ``du = c (diag Σ(x) − u) dt``,  ``P = σ₀ √u + ε₀``.

**Adam** (no bias correction) ``m ← β₁ m + (1 − β₁) g``, ``v ← β₂ v + (1 − β₂) g²``,
``x ← x − η m / (√v + ε)``; its SDE, state ``(x, m, u)``:

    ``dx = −P⁻¹ m dt``,  ``dm = c₁ (∇f(x) − m) dt + σ₀ c₁ F(x) dW``,  ``du = c₂ (diag Σ(x) − u) dt``.

PyTorch's Adam applies the bias corrections ``1/(1 − β^k)``; their SDE carries the factors
``γ_i(t) = 1 − e^{−c_i t}``, singular at ``t = 0`` when ``m₀ = 0``, which fixed-step schemes do
not integrate at their declared order, so it is not provided here.

**Weak order.** The step's noise is ``√τ σ₀ ξ``, of the size of a Brownian increment, so the
discrete algorithm is a weak Euler scheme for its SDE with increments ``ξ``. Expanding one step
(derived here, not quoted from the paper): the first two moments match the SDE's to ``O(τ²)`` and
the third moment is ``τ^{3/2} σ₀³ E[ξ⊗ξ⊗ξ] + O(τ²)``, so skewed noise leaves a weak error
``O(√τ) = O(η)``, while for noise with vanishing odd moments — both options here — the weak
error is ``O(τ)``: order 1 in ``τ``, which is what ``sme_orders = (1,)`` and
:func:`smetool.verify` measure.

**Square-root scaling rule** (the paper's practical result): multiplying the batch size by ``κ``
divides ``σ`` by ``√κ``; :func:`sqrt_scaling_rule` (``η → √κ η``, ``1 − β → κ (1 − β)``,
``ε → ε/√κ``) keeps ``σ₀, c, ε₀`` — hence the SDE — unchanged (:func:`sde_constants`).

References
----------
S. Malladi, K. Lyu, A. Panigrahi, S. Arora, "On the SDEs and scaling rules for adaptive gradient
algorithms", NeurIPS 2022. T. Tieleman, G. Hinton, Lecture 6.5 (RMSprop), 2012. D. P. Kingma,
J. Ba, "Adam: a method for stochastic optimization", ICLR 2015.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from ..bibliography import MALLADI_2022_ADAPTIVE, Reference
from ..brownian import (
    GaussianIncrements,
    Increments,
    RademacherIncrements,
    ThreePointIncrements,
    as_increments,
)
from ..checks import check_lr, check_positive
from ..sde import SDE, NoiseKind
from .base import (
    Algorithm,
    NegativeControl,
    SeparableNoise,
    TestFunction,
    on_leading_block,
    wrapped_references,
)
from .sgd import FiniteSumSGD, SGDLeastSquares
from .spec import PluginSpec

__all__ = ["AdaptiveAlgorithm", "AdaptiveSME", "NoiselessSecondMoment", "sqrt_scaling_rule",
           "sde_constants", "default_base", "ADAPTIVE_NOISE", "MAX_ENUMERATED_PATTERNS"]

ADAPTIVE_NOISE = (GaussianIncrements, RademacherIncrements, ThreePointIncrements)
"""The laws of ``z`` in the gradient noise ``ξ = F(x) z``: symmetric, unit variance (an
:class:`~smetool.brownian.Increments` over a unit interval)."""


def _betas(betas: float | Sequence[float], owner: str) -> tuple[float, ...]:
    values: tuple[Any, ...] = tuple(betas) if isinstance(betas, Sequence) else (betas,)
    for b in values:
        if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 <= float(b) < 1:
            raise ValueError(f"{owner}: every decay rate in `betas` must be in [0, 1); got {b!r}.")
    return tuple(float(b) for b in values)


def sqrt_scaling_rule(kappa: float, *, lr: float, betas: float | Sequence[float],
                      eps: float) -> dict[str, Any]:
    """The square-root scaling rule for RMSprop/Adam when the batch size is multiplied by ``kappa``.

    ``lr → √κ lr``, ``1 − β → κ (1 − β)`` for every decay rate, ``eps → eps / √κ``. With the
    gradient noise scale ``σ ∝ 1/√B`` this keeps the SDE constants :func:`sde_constants`
    unchanged, so the two runs follow the same SDE (Malladi et al. 2022).

    Parameters
    ----------
    kappa : float
        The batch-size multiplier, ``> 0``.
    lr : float
    betas : float or sequence of float
        ``β`` (RMSprop) or ``(β₁, β₂)`` (Adam), each in ``[0, 1)``.
    eps : float

    Returns
    -------
    dict
        ``{"lr", "betas", "eps"}`` of the scaled run (``betas`` a tuple).

    Raises
    ------
    ValueError
        A non-positive ``kappa``, ``lr`` or ``eps``, or a decay rate whose scaled ``1 − β`` would
        exceed 1.

    Examples
    --------
    >>> sqrt_scaling_rule(4, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)["lr"]
    0.002
    """
    owner = "sqrt_scaling_rule"
    kappa = check_positive(kappa, "kappa", owner)
    lr = check_positive(lr, "lr", owner)
    eps = check_positive(eps, "eps", owner)
    scaled = []
    for b in _betas(betas, owner):
        one_minus = kappa * (1.0 - b)
        if one_minus > 1:
            raise ValueError(
                f"{owner}: with kappa={kappa:g} the decay rate beta={b:g} would become "
                f"{1 - one_minus:g} < 0; the rule needs kappa · (1 − beta) ≤ 1."
            )
        scaled.append(1.0 - one_minus)
    return {"lr": math.sqrt(kappa) * lr, "betas": tuple(scaled), "eps": eps / math.sqrt(kappa)}


def sde_constants(*, lr: float, betas: float | Sequence[float], eps: float,
                  noise_scale: float) -> dict[str, Any]:
    """The SDE constants of RMSprop/Adam hyperparameters: ``σ₀ = σ η``, ``c = (1 − β)/η²``,
    ``ε₀ = ε η`` and the SDE time per step ``τ = η²``.

    Parameters
    ----------
    lr : float
        ``η``.
    betas : float or sequence of float
    eps : float
    noise_scale : float
        ``σ``, the gradient noise scale (``∝ 1/√batch``).

    Returns
    -------
    dict
        ``{"sigma0", "c", "eps0", "tau"}`` (``c`` a tuple, one per decay rate).
    """
    owner = "sde_constants"
    lr = check_positive(lr, "lr", owner)
    eps = check_positive(eps, "eps", owner)
    sigma = check_positive(noise_scale, "noise_scale", owner)
    return {"sigma0": sigma * lr, "c": tuple((1.0 - b) / lr**2 for b in _betas(betas, owner)),
            "eps0": eps * lr, "tau": lr**2}


def default_base(dtype: torch.dtype = torch.float64, device=None) -> SGDLeastSquares:
    """The least-squares problem of :meth:`SGDLeastSquares.default` started at ``x0 = (4, −4)``.

    Why (measured with ``smetool verify rmsprop|adam``, ``docs/numerics.md``): with the default
    constants ``σ₀ = 0.5, ε₀ = 1`` the far start gives a drift phase strong enough that the
    ``O(τ)`` errors of ``x`` and ``f`` stand 5–25 standard errors above the noise at ``10⁵``
    paths for ``τ = 1/8 … 1/32``, with successive slopes near 1 already from ``τ = 1/8``; with
    ``σ₀ = ε₀ = 0.25`` the errors are larger but the slopes are still 0.7–0.9 at ``τ = 1/128``
    (pre-asymptotic).
    """
    return SGDLeastSquares.default(dtype, device=device, x0=(4.0, -4.0))


MAX_ENUMERATED_PATTERNS = 256
"""The most sign patterns ``z ∈ {±1}^M`` over which a mean step is enumerated exactly."""


_A = TypeVar("_A", bound="AdaptiveAlgorithm")


class AdaptiveAlgorithm(SeparableNoise, Algorithm):
    """The noise oracle, checks and state layout shared by RMSprop and Adam.

    The randomness of a step is ``z`` in ``ξ = F(x) z`` (:meth:`draw`), drawn apart from the state.
    With Rademacher ``z`` and ``M ≤ 8`` noise columns the mean and covariance of a step are exact
    sums over the ``2^M`` sign patterns (:meth:`mean_step`, :meth:`step_covariance`), so the
    small-noise control variates of :func:`smetool.verify` apply on the discrete side; with
    Gaussian or three-point ``z`` the step (nonlinear in ``z`` through ``√u``) has no closed-form
    mean, and :meth:`has_exact_mean` says so.
    """

    references: ClassVar[tuple[Reference, ...]] = (MALLADI_2022_ADAPTIVE,)
    sme_orders = (1,)
    n_blocks: int  # the state is n_blocks × D: (x, u) or (x, m, u)

    @classmethod
    def default(cls: type[_A], dtype: torch.dtype = torch.float64, *, device=None, **kwargs) -> _A:
        """The method on :func:`default_base` (keywords as the constructor)."""
        return cls(default_base(dtype, device), **kwargs)

    @property
    @abc.abstractmethod
    def second_moment_rate(self) -> float:
        """``c`` of the second moment's SDE ``du = c (diag Σ − u) dt`` (RMSprop ``c``, Adam
        ``c₂``)."""

    def __init__(self, base: FiniteSumSGD, *, sigma0: float, eps0: float,
                 noise: Increments | str, u0: Any):
        owner = type(self).__name__
        if not isinstance(base, FiniteSumSGD):
            raise TypeError(f"{owner}: `base` must be a FiniteSumSGD; got {type(base).__name__}.")
        if isinstance(noise, str) and noise not in {cls.name for cls in ADAPTIVE_NOISE}:
            names = ", ".join(cls.name for cls in ADAPTIVE_NOISE)
            raise ValueError(f"{owner}: `noise` must be one of {names}; got {noise!r}.")
        noise = as_increments(noise)
        if not isinstance(noise, ADAPTIVE_NOISE):
            laws = ", ".join(c.__name__ for c in ADAPTIVE_NOISE)
            raise ValueError(f"{owner}: `noise` must be a symmetric law ({laws}); got {noise!r}.")
        self.base = base
        self.sigma0 = check_positive(sigma0, "sigma0", owner)
        self.eps0 = check_positive(eps0, "eps0", owner)
        self.noise = noise
        D = base.dim
        if u0 is None:  # warm start: the stationary value of u at x0
            u0 = self.gradient_variance(base.x0.unsqueeze(0))[0]
        u0 = torch.as_tensor(u0).to(base.x0)
        if u0.shape != (D,) or not bool(torch.isfinite(u0).all()) or bool((u0 < 0).any()):
            raise ValueError(
                f"{owner}: `u0` must be a finite, non-negative tensor of shape ({D},); got "
                f"shape {tuple(u0.shape)}."
            )
        self.u0 = u0

    # ---------------------------------------------------------------- shared pieces
    @property
    def dim(self) -> int:
        """``D`` of the parameters ``x``; the state has ``n_blocks · D`` coordinates."""
        return self.base.dim

    def split(self, z: Tensor) -> tuple[Tensor, ...]:
        """The blocks of a state ``(P, n_blocks · D)``: ``(x, u)`` or ``(x, m, u)``."""
        D = self.dim
        if z.ndim != 2 or z.shape[1] != self.n_blocks * D:
            raise ValueError(
                f"{type(self).__name__}: the state must have shape (paths, {self.n_blocks * D}); "
                f"got {tuple(z.shape)}."
            )
        return tuple(z[:, i * D:(i + 1) * D] for i in range(self.n_blocks))

    def gradient_variance(self, x: Tensor) -> Tensor:
        """``diag Σ(x)``, ``(P, D) -> (P, D)``."""
        return (self.base.noise_factor(x) ** 2).sum(dim=-1)

    def preconditioner(self, u: Tensor) -> Tensor:
        """``P = σ₀ √u + ε₀`` (the diagonal, ``(P, D)``)."""
        return self.sigma0 * u.clamp(min=0).sqrt() + self.eps0

    def scaled_gradient(self, x: Tensor, lr: float, z: Tensor) -> Tensor:
        """``η g / σ₀ = η ∇f / σ₀ + F z`` for the step ``τ = lr`` (``η = √τ``), ``(P, D)``.

        ``g = ∇f + (σ₀/η) F z`` is the noisy gradient; this scaling keeps every term ``O(1)``.
        ``z``, ``(P, M)``, is the step's randomness (:meth:`draw`).
        """
        return math.sqrt(lr) / self.sigma0 * self.base.gradient(x) + self.base.noise_factor_matvec(x, z)

    # ---------------------------------------------------------------- the control-variate contract
    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Tensor:
        """``z``, ``(P, M)``, from the noise law (unit variance, symmetric)."""
        return self.noise.sample(0.0, 1.0, (n_paths, self.base.n_points), generator, dtype, device)

    def has_exact_mean(self) -> bool:
        """True for Rademacher ``z`` with at most ``2^M ≤`` :data:`MAX_ENUMERATED_PATTERNS`."""
        return isinstance(self.noise, RademacherIncrements) \
            and 2**self.base.n_points <= MAX_ENUMERATED_PATTERNS

    def _enumerated_steps(self, x: Tensor, lr: float) -> Tensor:
        """``step_with(x, lr, z)`` for every sign pattern ``z``: ``(P, 2^M, n_blocks · D)``."""
        if not self.has_exact_mean():
            raise ValueError(
                f"{type(self).__name__}: the exact mean step needs Rademacher noise with at most "
                f"{MAX_ENUMERATED_PATTERNS} sign patterns; got noise={self.noise!r} with "
                f"2^{self.base.n_points} patterns.")
        M = self.base.n_points
        bits = torch.arange(2**M, device=x.device).unsqueeze(1) >> torch.arange(M, device=x.device)
        patterns = (2 * (bits & 1) - 1).to(x.dtype)  # (2^M, M), every sign vector once
        P, K = x.shape[0], patterns.shape[0]
        stepped = self.step_with(x.repeat_interleave(K, dim=0), lr, patterns.repeat(P, 1))
        return stepped.view(P, K, -1)

    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        """``E_z step_with(x, lr, z)``: the average over the ``2^M`` equally likely patterns."""
        return self._enumerated_steps(x, lr).mean(dim=1)

    def step_covariance(self, x: Tensor, lr: float) -> Tensor:
        """``Cov_z step_with(x, lr, z)``, ``(P, S, S)``, over the ``2^M`` patterns."""
        steps = self._enumerated_steps(x, lr)
        centred = steps - steps.mean(dim=1, keepdim=True)
        return centred.transpose(1, 2) @ centred / steps.shape[1]

    def _check_rate(self, c: float, lr: float, name: str) -> None:
        if c * lr >= 1:
            raise ValueError(
                f"{type(self).__name__}: the step `lr` must satisfy {name} · lr < 1 (decay rate in "
                f"(0, 1)); got lr={lr:g} with {name}={c:g}."
            )

    def cited_references(self) -> tuple[Reference, ...]:
        """The adaptive method's papers and the base problem's."""
        return wrapped_references(self, self.base)

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The SDE whose second moment forgets the gradient noise
        (:class:`NoiselessSecondMoment`): an ``O(1)`` drift error, so its weak error does not
        vanish with ``lr`` (slope 0)."""
        sme = self.sme(lr, order)
        if not isinstance(sme, AdaptiveSME):  # a subclass with another SDE declares its own
            return ()
        return (NegativeControl(
            "noiseless second moment", NoiselessSecondMoment(sme), 0.0,
            "du = −c u dt: E g² taken as (∇f)², so the preconditioner decays to ε₀"),)

    def test_functions(self) -> dict[str, TestFunction]:
        """The base's test functions on ``x`` and ``"u_sum"`` (``Σ_i u_i``)."""
        D = self.dim
        out = on_leading_block(self.base.test_functions(), D)
        out["u_sum"] = lambda z: z[:, -D:].sum(dim=1)
        return out


class NoiselessSecondMoment(SDE):
    """An adaptive method's SDE whose second moment forgets the gradient noise: ``du = −c u dt``
    instead of ``du = c (diag Σ − u) dt``.

    A wrong SME (a negative control): the derivation slip of treating ``E g²`` as ``(∇f)²``,
    which in the large-noise scaling is ``O(τ)``. The preconditioner then decays towards ``ε₀``
    instead of settling at ``σ₀ √diag Σ + ε₀``: an ``O(1)`` drift error.

    Parameters
    ----------
    sde : AdaptiveSME
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, sde: AdaptiveSME):
        if not isinstance(sde, AdaptiveSME):
            raise TypeError(f"NoiselessSecondMoment: `sde` must be an AdaptiveSME; got "
                            f"{type(sde).__name__}.")
        self.sde, self.noise_dim = sde, sde.noise_dim

    def drift(self, t: float, z: Tensor) -> Tensor:
        alg = self.sde.algorithm
        b = self.sde.drift(t, z)
        D = alg.dim
        noise_part = alg.second_moment_rate * alg.gradient_variance(alg.split(z)[0])
        return torch.cat([b[:, :-D], b[:, -D:] - noise_part], dim=1)

    def diffusion(self, t: float, z: Tensor) -> Tensor:
        return self.sde.diffusion(t, z)

    def diffusion_product(self, t: float, z: Tensor, dW: Tensor) -> Tensor:
        return self.sde.diffusion_product(t, z, dW)

    def __repr__(self) -> str:
        return f"NoiselessSecondMoment({self.sde!r})"


class AdaptiveSME(SDE):
    """The checks shared by the RMSprop and Adam SDEs (GENERAL noise, ``M = n``)."""

    noise_kind = NoiseKind.GENERAL
    algorithm_type: type

    def __init__(self, algorithm: AdaptiveAlgorithm, lr: float, order: int = 1):
        owner = type(self).__name__
        if not isinstance(algorithm, self.algorithm_type):
            raise TypeError(f"{owner}: `algorithm` must be an {self.algorithm_type.__name__}; "
                            f"got {type(algorithm).__name__}.")
        self.lr = check_lr(lr, owner)
        if isinstance(order, bool) or order != 1:
            raise ValueError(f"{owner}: `order` must be 1 (the only order provided); got {order!r}.")
        self.algorithm = algorithm
        self.noise_dim = algorithm.base.n_points

    def _in_block(self, block: Tensor, index: int) -> Tensor:
        """``block`` (rows of one state block) at position ``index``, zeros in the others: the
        diffusion of every block but one is zero."""
        zero = torch.zeros_like(block)
        return torch.cat([block if i == index else zero for i in range(self.algorithm.n_blocks)],
                         dim=1)


def adaptive_spec(cls: type[AdaptiveAlgorithm], *, description: str, n_paths: int,
                  references: tuple[Reference, ...]) -> PluginSpec:
    """The plug-in declaration of an adaptive method on :func:`default_base` with Rademacher
    noise: its mean step is then an exact sum over sign patterns, so the discrete side gets the
    control variates (``docs/numerics.md``: variance reduced 150–40,000 times)."""
    def factory(*, dtype: torch.dtype, device: Any) -> AdaptiveAlgorithm:
        return cls.default(dtype, device=device, noise="rademacher")

    return PluginSpec(name=cls.name, factory=factory, description=description, orders=(1,),
                      lrs=(1 / 8, 1 / 16, 1 / 32, 1 / 64), horizon=1.0, n_paths=n_paths,
                      steps_per_lr=4, references=references, algorithm=cls,
                      describe=lambda alg: {"problem": repr(alg)})
