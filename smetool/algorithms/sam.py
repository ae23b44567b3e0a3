"""The SAM plug-ins: unnormalised and normalised sharpness-aware minimisation and their SMEs.

SAM (Foret et al. 2021) evaluates the minibatch gradient at an ascent point:

* USAM: ``x_{k+1} = x_k − lr ∇f_γ(x_k + ρ ∇f_γ(x_k))``;
* SAM:  ``x_{k+1} = x_k − lr ∇f_γ(x_k + ρ ∇f_γ(x_k) / ‖∇f_γ(x_k)‖)``,

with the same minibatch ``γ`` at both points. Compagnoni et al. (2023) derive SDEs of weak order 1
for both, in time ``t = k · lr``, whose drifts are gradients of implicitly regularised losses
(quoted): ``−∇f̃`` with ``f̃^USAM = f + (ρ/2) E‖∇f_γ‖²`` and ``f̃^SAM = f + ρ E‖∇f_γ‖``.

The test problem is :class:`~smetool.models.NoisyQuadratic`: ``∇f_γ(x) = H(x − x*) + L z``. There
(derived here) ``∇f_γ`` is affine with Hessian ``H`` for every ``γ``, so with ``g = ∇f_γ(x)``:

* the USAM step is ``x − lr (I + ρH) g``: its mean ``x − lr (I + ρH) ∇f`` is exactly ``−lr`` times
  the paper's drift ``∇f + ρ E[H ∇f_γ] = ∇f + ρ H ∇f`` (a closed-form Hessian–vector product),
  and its covariance is ``lr² (I + ρH) Σ (I + ρH)``;
* the SAM step is ``x − lr (g + ρ H g/‖g‖)``: its mean is ``−lr (∇f + ρ H E[g/‖g‖])``, again exactly
  the paper's drift, since ``∇_x E‖∇f_γ(x)‖ = H E[g/‖g‖]``. For isotropic noise ``Σ = σ² I`` in
  three dimensions ``E[g/‖g‖]`` is closed-form (:func:`normalised_gaussian_mean`).

Both steps are therefore :class:`~smetool.algorithms.SeparableStochasticGradient` with exact means
for every ``ρ`` (not only to first order in ``ρ``): their SMEs' drifts are the steps' means, so the
SMEs have weak order 1 in ``lr`` at fixed ``ρ``, and an SME without the ``ρ``-terms (the SGD SME)
has an ``O(ρ)`` error that does not vanish with ``lr`` — the negative control. Diffusions: USAM's
is ``√lr (I + ρH) L``, the exact step covariance (the paper's ``Σ + ρ(HΣ + ΣH)`` is its first-order
part in ``ρ``; the square is positive semi-definite for every ``ρ``); SAM's is the SGD part
``√lr σ I`` of the step covariance ``σ²I + ρ(HC + CH) + ρ² H Cov(g/‖g‖) H``. Its cross term
``C = Cov(g, g/‖g‖) = σ [c(a) I + a c'(a) μ̂μ̂ᵀ]`` is closed-form (Stein's lemma, derived here) but
``Cov(g/‖g‖)`` needs ``E‖g‖⁻²``-type integrals (Dawson's function, not in torch), a first-order
truncation need not be positive semi-definite, and at weak order 1 the diffusion enters the
error only at ``O(lr)`` (any ``√lr`` diffusion gives order 1), so the order check cannot tell them
apart. The paper's SAM SDE carries Hessian-dependent diffusion terms that are not reproduced
here; the drift is theirs.

References
----------
P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, "Sharpness-aware minimization for efficiently
improving generalization", ICLR 2021. E. M. Compagnoni, L. Biggio, A. Orvieto, F. N. Proske,
H. Kersting, A. Lucchi, "An SDE for modeling SAM: theory and insights", ICML 2023.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import COMPAGNONI_2023_SAM, FORET_2021_SAM
from ..checks import check_lr, check_nonnegative
from ..exact.sam_moments import USAMMoments
from ..models.landscape import Landscape
from ..models.noisy_quadratic import NoisyQuadratic, as_matrix
from ..sde import SDE, NoiseKind
from .base import (
    HasExactMoments,
    NegativeControl,
    SeparableStochasticGradient,
    TestFunction,
    start_on_every_path,
)
from .capabilities import Regularizer
from .gradient import minibatch_norm_moment
from .observables import Coordinate
from .quadratic import QuadraticClosedForms
from .spec import AnalysisSpec, Option, PluginSpec

__all__ = ["normalised_gaussian_mean", "USAM", "SAM", "USAMSME", "SAMSME", "default_problem",
           "DEFAULT_HESSIAN", "DEFAULT_X0", "PLUGINS"]

DEFAULT_HESSIAN = ((2.0, 0.5, 0.0), (0.5, 1.0, 0.25), (0.0, 0.25, 0.5))
"""``H`` of the default problem: eigenvalues 0.37, 0.92, 2.21 (minimiser ``x* = 0``)."""

DEFAULT_X0 = (2.0, -1.5, 1.0)
"""The default initial point, far from the minimiser so that the drift dominates."""

_SQRT2 = math.sqrt(2.0)
_C0 = 4.0 / (3.0 * math.sqrt(2.0 * math.pi))  # c(0) = Γ(2) / (√2 Γ(5/2))


def _series_c(x: Tensor) -> Tensor:
    """``c = C0 · ₁F₁(½; 5/2; −x)`` by its Taylor series (``x = a²/2 < 1/8``: 10 terms, < 1e-15)."""
    term, total = torch.ones_like(x), torch.ones_like(x)
    for n in range(10):  # term_{n+1}/term_n = −(½ + n) x / ((5/2 + n)(n + 1))
        term = term * (-(0.5 + n) * x / ((2.5 + n) * (n + 1)))
        total = total + term
    return _C0 * total


def normalised_gaussian_mean(mu: Tensor, sigma: float) -> Tensor:
    """``E[g/‖g‖]`` for ``g ~ N(μ, σ² I₃)``: ``(P, 3) -> (P, 3)``, smooth in ``μ`` (also at 0).

    ``E[g/‖g‖] = ∇_μ E‖g‖`` and ``E‖g‖ = σ F(a)``, ``a = ‖μ‖/σ``, with the mean of the non-central
    chi distribution with three degrees of freedom
    ``F(a) = (a + 1/a) erf(a/√2) + √(2/π) e^{−a²/2}``; so ``E[g/‖g‖] = (μ/σ) c(a)`` with
    ``c(a) = F'(a)/a = [(1 − 1/a²) erf(a/√2) + √(2/π) e^{−a²/2}/a] / a``
    ``= (4 / (3√(2π))) ₁F₁(½; 5/2; −a²/2)``, evaluated by its series for ``a < ½`` (where the
    closed form cancels) — both branches differentiable, so :func:`torch.func.jvp` applies.
    (Derived here; in one dimension the same recipe gives ``E sign g = erf(μ/(√2σ))``.)

    Raises
    ------
    ValueError
        ``mu`` not of shape ``(P, 3)``, or ``sigma`` not positive.
    """
    if mu.ndim != 2 or mu.shape[1] != 3:
        raise ValueError(f"`mu` must have shape (paths, 3); got {tuple(mu.shape)}.")
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive; got {sigma!r}.")
    x = 0.5 * (mu * mu).sum(dim=1, keepdim=True) / sigma**2  # a²/2
    small = x < 0.125
    a = torch.sqrt(2.0 * torch.where(small, torch.ones_like(x), x))  # safe: no sqrt(0) branch
    closed = ((1.0 - 1.0 / a**2) * torch.erf(a / _SQRT2)
              + math.sqrt(2.0 / math.pi) * torch.exp(-0.5 * a * a) / a) / a
    c = torch.where(small, _series_c(torch.where(small, x, torch.zeros_like(x))), closed)
    return mu * (c / sigma)


class _SAMFamily(QuadraticClosedForms, SeparableStochasticGradient):
    """Shared by USAM and SAM: state, noise, test functions. The step runs on any
    :class:`~smetool.models.landscape.Landscape` (its minibatch law is ``γ``); the exact mean,
    covariance, SME and negative controls need a :class:`NoisyQuadratic` (module docstring)."""

    references = (COMPAGNONI_2023_SAM, FORET_2021_SAM)
    sme_orders = (1,)

    def __init__(self, problem: Landscape, x0: Any, rho: float):
        owner = type(self).__name__
        if not isinstance(problem, Landscape):
            raise TypeError(f"{owner}: `problem` must be a NoisyQuadratic or another smetool "
                            f"Landscape; got {type(problem).__name__}.")
        self.problem = problem
        dtype = problem.hessian.dtype if isinstance(problem, NoisyQuadratic) else torch.float64
        self.x0 = as_matrix(x0, "x0", (problem.n_params,), owner, dtype)
        self.rho = check_nonnegative(rho, "rho", owner)

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``x0`` on every path, ``(P, D)`` (a fresh tensor)."""
        return start_on_every_path(self.x0, n_paths, dtype=dtype, device=device,
                                   owner=type(self).__name__)

    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> Any:
        """The minibatch ``γ`` of both gradient calls of one step (``z ~ N(0, I)`` on the
        quadratic)."""
        return self.problem.draw_minibatch(n_paths, generator, dtype=dtype, device=device)

    def minibatch_gradient(self, y: Tensor, z: Any) -> Tensor:
        """``∇f_γ(y)`` (``H (y − x*) + L z`` on the quadratic), ``(P, D)``."""
        return self.problem.minibatch_gradient(y, z)

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """``x − lr ∇f_γ(ascent point)`` with a fresh ``γ`` per path."""
        lr = check_lr(lr, type(self).__name__)
        return x - lr * self.stochastic_gradient(x, generator)

    def test_functions(self) -> dict[str, TestFunction]:
        """``"f"`` (the objective) and ``"x[0]"``; ``(P, D) -> (P,)``.

        Chosen by measurement on the default problem (``docs/numerics.md``): their first-order
        error constants are large (``|c₁| ≈ 0.5–0.8`` at ``T = ½``) and their second-order terms
        small, while those of ``x[1]`` and ``x[2]`` are below 0.06 — unresolved, not wrong.
        """
        return {"f": self.problem.loss, "x[0]": Coordinate(0)}

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The SGD SME (``ρ = 0``): its drift misses the ``O(ρ)`` regulariser, an error that does
        not vanish as ``lr → 0`` (slope 0)."""
        return (NegativeControl("SGD SME (rho = 0)", USAMSME(self.quadratic(), lr, 0.0), 0.0,
                                "drops the sharpness term: an O(rho) drift error at every lr"),)

    def _norm_regularizer(self, name: str, power: float, factor: float) -> Regularizer:
        """``factor · E_γ‖∇f_γ‖^power`` by minibatch draws."""
        def value(theta: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
            mean, se = minibatch_norm_moment(self.problem, theta, generator, power)
            return factor * mean, factor * se

        return Regularizer(name, "the sharpness term of the SAM SDE's drift (Compagnoni et al. "
                           "2023)", value, (COMPAGNONI_2023_SAM,))



class USAMSME(SDE):
    """The USAM SME ``dX = −(I + ρH) ∇f(X) dt + √lr (I + ρH) L dW`` (ADDITIVE noise).

    The drift is ``−∇(f + (ρ/2)‖∇f‖²) = −(∇f + ρ ∇²f ∇f)``, a Hessian–vector product, here
    :meth:`NoisyQuadratic.hvp` in closed form; ``ρ = 0`` gives the SGD SME.

    References
    ----------
    Compagnoni et al., ICML 2023 (the USAM SDE).
    """

    noise_kind = NoiseKind.ADDITIVE

    def __init__(self, problem: NoisyQuadratic, lr: float, rho: float):
        self.problem, self.lr = problem, check_lr(lr, "USAMSME")
        self.rho = check_nonnegative(rho, "rho", "USAMSME")
        D = problem.dim
        self.noise_dim = D
        C = torch.eye(D, dtype=problem.hessian.dtype) + self.rho * problem.hessian
        self._factor = math.sqrt(self.lr) * C @ problem.noise_factor

    def drift(self, t: float, x: Tensor) -> Tensor:
        g = self.problem.gradient(x)
        return -(g + self.rho * self.problem.hvp(x, g))

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return self._factor.to(x)

    def __repr__(self) -> str:
        return f"USAMSME(lr={self.lr:g}, rho={self.rho:g})"


class SAMSME(SDE):
    """The SAM SME ``dX = −(∇f + ρ H E[g/‖g‖])(X) dt + √lr σ dW``, ``g ~ N(∇f(X), σ² I)``.

    The drift is ``−∇(f + ρ E‖∇f_γ‖)`` (Compagnoni et al. 2023), with ``E[g/‖g‖]`` from
    :func:`normalised_gaussian_mean`; the diffusion is the SGD part of the step's covariance (see
    the module docstring).

    References
    ----------
    Compagnoni et al., ICML 2023 (the SAM SDE's drift).
    """

    noise_kind = NoiseKind.ADDITIVE

    def __init__(self, problem: NoisyQuadratic, lr: float, rho: float, sigma: float):
        self.problem, self.lr = problem, check_lr(lr, "SAMSME")
        self.rho = check_nonnegative(rho, "rho", "SAMSME")
        self.sigma = float(sigma)
        self.noise_dim = problem.dim
        self._factor = math.sqrt(self.lr) * problem.noise_factor

    def drift(self, t: float, x: Tensor) -> Tensor:
        g = self.problem.gradient(x)
        return -(g + self.rho * self.problem.hvp(x, normalised_gaussian_mean(g, self.sigma)))

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return self._factor.to(x)

    def __repr__(self) -> str:
        return f"SAMSME(lr={self.lr:g}, rho={self.rho:g}, sigma={self.sigma:g})"


class USAM(_SAMFamily, HasExactMoments):
    """USAM on a :class:`NoisyQuadratic`, with its SME and exact moments.

    Parameters
    ----------
    problem : NoisyQuadratic
    x0 : array-like, (D,)
        The common initial point.
    rho : float
        The ascent radius ``ρ ≥ 0``.

    References
    ----------
    Foret et al., ICLR 2021 (SAM); Compagnoni et al., ICML 2023 (USAM and its SDE).

    Examples
    --------
    >>> algo = USAM(default_problem(0.2), DEFAULT_X0, rho=0.5)
    >>> algo.sme(0.1).drift(0.0, algo.initial_state(2)).shape
    torch.Size([2, 3])
    """

    name = "usam"

    def gradient_with(self, x: Tensor, noise: Tensor) -> Tensor:
        """``∇f_γ(x + ρ ∇f_γ(x))`` for ``z = noise``, ``(P, D)``."""
        return self.minibatch_gradient(x + self.rho * self.minibatch_gradient(x, noise), noise)

    def mean_gradient(self, x: Tensor) -> Tensor:
        """``(I + ρH) ∇f(x)``, exact (on the quadratic)."""
        q = self.quadratic()
        g = q.gradient(x)
        return g + self.rho * q.hvp(x, g)

    def gradient_covariance(self, x: Tensor) -> Tensor | None:
        """``(I + ρH) Σ (I + ρH)``, exact, ``(P, D, D)`` (on the quadratic; ``None`` elsewhere)."""
        if not self.has_exact_mean():
            return None
        q = self.quadratic()
        H = q.hessian.to(x)
        C = torch.eye(q.dim, dtype=x.dtype, device=x.device) + self.rho * H
        cov = C @ q.noise_covariance.to(x) @ C
        return cov.expand(x.shape[0], -1, -1)

    def sme(self, lr: float, order: int = 1) -> USAMSME:
        """The order-1 USAM SME; see :class:`USAMSME`."""
        if isinstance(order, bool) or order != 1:
            raise ValueError(f"usam: `order` must be 1; got {order!r}.")
        return USAMSME(self.quadratic(), lr, self.rho)

    def exact_moments(self) -> USAMMoments:
        """Exact moments of USAM and of its SME (:class:`~smetool.exact.USAMMoments`)."""
        p = self.quadratic()
        return USAMMoments(p.hessian.cpu(), p.minimiser.cpu(), p.noise_factor.cpu(), self.rho)

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``(ρ/2) E_γ‖∇f_γ‖²``, by minibatch draws (Compagnoni et al. 2023)."""
        return self._norm_regularizer("(ρ/2) E‖∇f_γ‖²", 2.0, 0.5 * self.rho)

    def __repr__(self) -> str:
        return f"USAM({self.problem!r}, rho={self.rho:g})"


class SAM(_SAMFamily):
    """SAM (normalised ascent step) on a three-dimensional :class:`NoisyQuadratic` with isotropic
    noise ``L = σ I``, with its SME.

    Parameters
    ----------
    problem : NoisyQuadratic
        ``D = 3`` and ``noise_factor = σ I`` (the closed form of ``E[g/‖g‖]``).
    x0 : array-like, (3,)
    rho : float

    Raises
    ------
    ValueError
        Another dimension or a non-isotropic noise factor.

    References
    ----------
    Foret et al., ICLR 2021 (SAM); Compagnoni et al., ICML 2023 (its SDE).
    """

    name = "sam"

    def __init__(self, problem: Landscape, x0: Any, rho: float):
        super().__init__(problem, x0, rho)
        self.sigma = float("nan")
        if not isinstance(problem, NoisyQuadratic):
            return  # the step alone: no closed-form mean to check the noise for
        L = problem.noise_factor
        sigma = float(L[0, 0])
        eye = torch.eye(problem.dim, dtype=L.dtype)
        if problem.dim != 3 or not sigma > 0 or not torch.allclose(L, sigma * eye, rtol=0, atol=0):
            raise ValueError("SAM: the closed-form mean of the normalised step needs D = 3 and an "
                             f"isotropic noise factor σ I with σ > 0; got D = {problem.dim} and "
                             f"noise_factor {L.tolist()}.")
        self.sigma = sigma

    def gradient_with(self, x: Tensor, noise: Tensor) -> Tensor:
        """``∇f_γ(x + ρ g/‖g‖)``, ``g = ∇f_γ(x)``, for ``z = noise``: ``(P, D)``."""
        g = self.minibatch_gradient(x, noise)
        return self.minibatch_gradient(x + self.rho * g / g.norm(dim=1, keepdim=True), noise)

    def mean_gradient(self, x: Tensor) -> Tensor:
        """``∇f + ρ H E[g/‖g‖]``, exact (:func:`normalised_gaussian_mean`; on the quadratic)."""
        q = self.quadratic()
        g = q.gradient(x)
        return g + self.rho * q.hvp(x, normalised_gaussian_mean(g, self.sigma))

    def sme(self, lr: float, order: int = 1) -> SAMSME:
        """The order-1 SAM SME; see :class:`SAMSME`."""
        if isinstance(order, bool) or order != 1:
            raise ValueError(f"sam: `order` must be 1; got {order!r}.")
        return SAMSME(self.quadratic(), lr, self.rho, self.sigma)

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``ρ E_γ‖∇f_γ‖``, by minibatch draws (Compagnoni et al. 2023)."""
        return self._norm_regularizer("ρ E‖∇f_γ‖", 1.0, self.rho)

    def __repr__(self) -> str:
        return f"SAM({self.problem!r}, rho={self.rho:g}, sigma={self.sigma:g})"


def default_problem(noise_std: float, dtype: torch.dtype = torch.float64) -> NoisyQuadratic:
    """The default problem: :data:`DEFAULT_HESSIAN`, ``x* = 0``, isotropic noise ``σ I``."""
    sigma = check_nonnegative(noise_std, "noise_std", "default_problem")
    return NoisyQuadratic(DEFAULT_HESSIAN, (0.0, 0.0, 0.0), sigma * torch.eye(3, dtype=dtype),
                          dtype=dtype)


def _rho_option(text: str) -> float:
    return check_nonnegative(float(text), "rho")


def _sigma_option(text: str) -> float:
    value = check_nonnegative(float(text), "noise_std")
    if value == 0:
        raise ValueError("`noise_std` must be positive; got 0.")
    return value


def _factory(cls: type[_SAMFamily]):
    def build(*, dtype: torch.dtype, device: Any, rho: float, noise_std: float) -> _SAMFamily:
        # The problem's tensors stay on the CPU; states of any device read them with `.to(x)`.
        return cls(default_problem(noise_std, dtype), DEFAULT_X0, rho)

    def on_landscape(landscape: Landscape, theta0: Tensor, *, rho: float,
                     noise_std: float) -> _SAMFamily:
        # on a network the noise is the landscape's minibatch law; noise_std is the quadratic's
        return cls(landscape, theta0, rho)

    return build, on_landscape


_SAM_OPTIONS = (Option("rho", _rho_option, 0.5, "ascent radius rho >= 0"),
                Option("noise_std", _sigma_option, 0.5, "gradient-noise standard deviation sigma"))


def _spec(cls: type[_SAMFamily], description: str) -> PluginSpec:
    build, on_landscape = _factory(cls)
    return PluginSpec(
        name=cls.name, factory=build, description=description, orders=(1,),
        lrs=(1 / 16, 1 / 32, 1 / 64, 1 / 128), horizon=0.5, n_paths=2_000, steps_per_lr=2,
        options=_SAM_OPTIONS, algorithm=cls, describe=lambda alg: {"problem": repr(alg)},
        # on a network: a radius of the order of the SAM paper's (0.05), not the quadratic's 0.5
        analysis=AnalysisSpec(lr=1 / 16, steps=400, network_options={"rho": 0.05},
                              on_landscape=on_landscape))


PLUGINS = (
    _spec(USAM, "unnormalised SAM on a 3-d quadratic with Gaussian gradient noise "
          "(Compagnoni et al., ICML 2023)"),
    _spec(SAM, "SAM (normalised ascent) on a 3-d quadratic with isotropic Gaussian gradient noise "
          "(Compagnoni et al., ICML 2023)"),
)
"""The ``usam`` and ``sam`` plug-ins of the command line."""
