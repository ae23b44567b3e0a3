"""The SignSGD plug-in: SignSGD with Gaussian gradient noise and its SME (erf drift).

SignSGD (Bernstein et al. 2018) moves every coordinate by ``lr`` against the sign of its minibatch
gradient: ``x_{k+1} = x_k − lr sign(∇f_γ(x_k))``. Compagnoni et al. (2025) derive its SDE of weak
order 1 in time ``t = k · lr`` (quoted):

    dX = −(1 − 2 P(∇f_γ(X) < 0)) dt + √lr Σ̄(X)^{1/2} dW,

``P`` componentwise and ``Σ̄`` the covariance of ``sign(∇f_γ)``. For Gaussian noise
``∇f_γ = ∇f + L z`` with a diagonal ``L = diag(σ)`` (their Gaussian corollary) this is

    dX = −erf(∇f(X) / (√2 σ)) dt + √lr diag(√(1 − erf²(∇f/(√2σ)))) dW,

a drift that is smooth for ``σ > 0`` but tends to the discontinuous ``−sign ∇f`` as ``σ → 0``.
The discrete step's mean ``x − lr erf(∇f/(√2σ))`` and covariance ``lr² diag(1 − erf²)`` are
exact (independent coordinates), so :class:`SignSGD` is a
:class:`~smetool.algorithms.SeparableNoise` with an exact ``mean_step`` and ``step_covariance``.

The diffusion is diagonal, but its ``i``-th entry depends on every coordinate of ``x`` through
``∇f``: the DIAGONAL kind of :class:`~smetool.NoiseKind` (``b_i(x_i)``) does not describe it, so
the SME declares GENERAL noise with a matrix-free :meth:`SignSGDSME.diffusion_product`.

References
----------
J. Bernstein, Y.-X. Wang, K. Azizzadenesheli, A. Anandkumar, "signSGD: compressed optimisation for
non-convex problems", ICML 2018. E. M. Compagnoni, T. Liu, R. Islamov, F. N. Proske, A. Orvieto,
A. Lucchi, "Adaptive methods through the lens of SDEs: theoretical insights on the role of
noise", ICLR 2025.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import BERNSTEIN_2018_SIGNSGD, COMPAGNONI_2025_ADAPTIVE
from ..checks import check_lr, check_positive
from ..models.landscape import Landscape
from ..models.noisy_quadratic import NoisyQuadratic, as_matrix
from ..sde import SDE, NoiseKind
from .base import Algorithm, NegativeControl, SeparableNoise, TestFunction, start_on_every_path
from .observables import Coordinate
from .quadratic import QuadraticClosedForms
from .sam import USAMSME
from .spec import AnalysisSpec, Option, PluginSpec, positive_option

__all__ = ["SignSGD", "SignSGDSME", "SignGDFlow", "PLUGINS"]

_SQRT2 = math.sqrt(2.0)


def _sign_moments(g: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """``m = E sign(g + σz) = erf(g/(√2σ))`` and ``s = √(1 − m²)``, computed as
    ``√(erfc|u| (2 − erfc|u|))`` so that it stays accurate (and > 0) where ``|m| → 1``."""
    u = g / (_SQRT2 * sigma)
    tail = torch.erfc(u.abs())
    return torch.erf(u), torch.sqrt(tail * (2.0 - tail))


class SignSGDSME(SDE):
    """``dX = −erf(∇f/(√2σ)) dt + √lr diag(√(1 − erf²)) dW`` (GENERAL noise, ``M = D``).

    References
    ----------
    Compagnoni et al., ICLR 2025 (the SignSGD SDE and its Gaussian-noise form).
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, algorithm: SignSGD, lr: float):
        self.algorithm, self.lr = algorithm, check_lr(lr, "SignSGDSME")
        self.noise_dim = algorithm.quadratic().dim

    def drift(self, t: float, x: Tensor) -> Tensor:
        m, _ = _sign_moments(self.algorithm.problem.gradient(x), self.algorithm.sigma.to(x))
        return -m

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        _, s = _sign_moments(self.algorithm.problem.gradient(x), self.algorithm.sigma.to(x))
        return math.sqrt(self.lr) * torch.diag_embed(s)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        _, s = _sign_moments(self.algorithm.problem.gradient(x), self.algorithm.sigma.to(x))
        return math.sqrt(self.lr) * s * dW

    def __repr__(self) -> str:
        return f"SignSGDSME(lr={self.lr:g})"


class SignGDFlow(SDE):
    """The noise-free sign flow ``dX = −sign(∇f(X)) dt`` (the SME's ``σ → 0`` limit): a negative
    control, wrong by ``O(1)`` wherever the noise is comparable to the gradient."""

    noise_kind = NoiseKind.ADDITIVE
    noise_dim = 1

    def __init__(self, algorithm: SignSGD):
        self.algorithm = algorithm

    def drift(self, t: float, x: Tensor) -> Tensor:
        return -torch.sign(self.algorithm.problem.gradient(x))

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[1], 1)



class SignSGD(QuadraticClosedForms, SeparableNoise, Algorithm):
    """SignSGD on a :class:`~smetool.models.NoisyQuadratic` with diagonal Gaussian gradient noise,
    or (the step alone) on any :class:`~smetool.models.landscape.Landscape` with its minibatch law.

    Parameters
    ----------
    problem : NoisyQuadratic or Landscape
        A quadratic's ``noise_factor`` must be diagonal, ``L = diag(σ)`` with ``σ > 0``; on another
        landscape the exact mean step, covariance and SME are refused.
    x0 : array-like, (D,)

    Raises
    ------
    TypeError
        ``problem`` is not a :class:`~smetool.models.landscape.Landscape`.
    ValueError
        A non-diagonal noise factor or a zero noise scale (the SME needs ``σ > 0``).

    References
    ----------
    Bernstein et al., ICML 2018 (SignSGD); Compagnoni et al., ICLR 2025 (its SDE).

    Examples
    --------
    >>> algo = SignSGD.default()
    >>> x = algo.step(algo.initial_state(4), 0.1, torch.Generator().manual_seed(0))
    >>> bool(((x - algo.initial_state(4)).abs() - 0.1).abs().max() < 1e-12)   # every move is ±lr
    True
    """

    name = "signsgd"
    references = (COMPAGNONI_2025_ADAPTIVE, BERNSTEIN_2018_SIGNSGD)
    sme_orders = (1,)

    def __init__(self, problem: Landscape, x0: Any):
        if not isinstance(problem, Landscape):
            raise TypeError(f"SignSGD: `problem` must be a NoisyQuadratic or another smetool "
                            f"Landscape; got {type(problem).__name__}.")
        self.problem = problem
        self.sigma = torch.full((problem.n_params,), float("nan"), dtype=torch.float64)
        dtype = torch.float64
        if isinstance(problem, NoisyQuadratic):
            L = problem.noise_factor
            sigma = torch.diagonal(L).clone()
            if not torch.equal(L, torch.diag(sigma)) or not bool((sigma > 0).all()):
                raise ValueError("SignSGD: the erf drift is exact for independent coordinates "
                                 f"only: `noise_factor` must be diag(σ) with σ > 0; got "
                                 f"{L.tolist()}.")
            self.sigma, dtype = sigma, L.dtype
        self.x0 = as_matrix(x0, "x0", (problem.n_params,), "SignSGD", dtype)

    @classmethod
    def default(cls, noise_std: float = 0.25, dtype: torch.dtype = torch.float64) -> SignSGD:
        """The verification problem (``docs/numerics.md``): ``f = ½ xᵀHx``,
        ``H = [[2, ½], [½, 1]]``, from ``x0 = (0.8, −0.8)``, noise ``σ I``.

        Why: the erf drift bends (and the first-order error accumulates) where ``|∇f_i| ~ σ``; from
        this ``x0`` both gradient components enter that range within the horizon ``T = ¾`` while the
        moves ``±lr`` stay small against the width ``σ/‖H‖`` of the bend for ``lr ≤ 1/16``.
        """
        sigma = check_positive(noise_std, "noise_std", "SignSGD.default")
        problem = NoisyQuadratic(((2.0, 0.5), (0.5, 1.0)), (0.0, 0.0),
                                 sigma * torch.eye(2, dtype=dtype), dtype=dtype)
        return cls(problem, (0.8, -0.8))

    def initial_state(self, n_paths: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """``x0`` on every path, ``(P, D)`` (a fresh tensor)."""
        return start_on_every_path(self.x0, n_paths, dtype=dtype, device=device, owner="SignSGD")

    def draw(self, n_paths: int, lr: float, generator: torch.Generator, *,
             dtype: torch.dtype, device: torch.device) -> Any:
        """The minibatch ``γ`` of one step (``z ~ N(0, I)`` on the quadratic)."""
        return self.problem.draw_minibatch(n_paths, generator, dtype=dtype, device=device)

    def step_with(self, x: Tensor, lr: float, noise: Any) -> Tensor:
        """``x − lr sign(∇f_γ(x))`` (``∇f(x) + σ z`` on the quadratic)."""
        lr = check_lr(lr, "SignSGD")
        return x - lr * torch.sign(self.problem.minibatch_gradient(x, noise))

    def mean_step(self, x: Tensor, lr: float) -> Tensor:
        """``x − lr erf(∇f/(√2σ))``, exact (on the quadratic)."""
        m, _ = _sign_moments(self.quadratic().gradient(x), self.sigma.to(x))
        return x - lr * m

    def step_covariance(self, x: Tensor, lr: float) -> Tensor | None:
        """``lr² diag(1 − erf²(∇f/(√2σ)))``, exact, ``(P, D, D)`` (``None`` off the quadratic)."""
        if not self.has_exact_mean():
            return None
        _, s = _sign_moments(self.problem.gradient(x), self.sigma.to(x))
        return torch.diag_embed(lr * lr * s * s)

    def sme(self, lr: float, order: int = 1) -> SignSGDSME:
        """The order-1 SignSGD SME; see :class:`SignSGDSME`."""
        if isinstance(order, bool) or order != 1:
            raise ValueError(f"signsgd: `order` must be 1; got {order!r}.")
        self.quadratic()
        return SignSGDSME(self, lr)

    def test_functions(self) -> dict[str, TestFunction]:
        """``"x[i]"`` for every coordinate; ``(P, D) -> (P,)``.

        On the default problem the objective's first-order error constant is small and not yet
        constant over the learning rates (``−0.01`` … ``−0.04``, measured, ``docs/numerics.md``),
        so ``f`` is not among the defaults; pass it to :func:`smetool.verify` to see it.
        """
        return {f"x[{i}]": Coordinate(i) for i in range(self.problem.n_params)}

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The SGD SME (drift ``−∇f``) and the noise-free sign flow (drift ``−sign ∇f``): both
        wrong by ``O(1)`` in the drift, so their errors do not vanish as ``lr → 0``."""
        return (
            NegativeControl("SGD SME", USAMSME(self.quadratic(), lr, 0.0), 0.0,
                            "the plain-SGD drift −∇f instead of −erf(∇f/(√2σ))"),
            NegativeControl("sign flow", SignGDFlow(self), 0.0,
                            "the noise-free limit −sign ∇f: ignores that noise smooths the sign"),
        )

    def __repr__(self) -> str:
        return f"SignSGD({self.problem!r}, sigma={self.sigma.tolist()})"


def _factory(*, dtype: torch.dtype, device: Any, noise_std: float) -> SignSGD:
    # The problem's tensors stay on the CPU; states of any device read them with `.to(x)`.
    return SignSGD.default(noise_std, dtype)


def _on_landscape(landscape: Landscape, theta0: Tensor, *, noise_std: float) -> SignSGD:
    # on a network the noise is the landscape's minibatch law; noise_std is the quadratic's
    return SignSGD(landscape, theta0)


PLUGINS = (
    PluginSpec(
        name="signsgd",
        factory=_factory,
        description="SignSGD with Gaussian gradient noise on a 2-d quadratic, erf drift "
        "(Compagnoni et al., ICLR 2025)",
        orders=(1,),
        lrs=(1 / 16, 1 / 32, 1 / 64, 1 / 128),
        horizon=0.75,
        n_paths=5_000,
        steps_per_lr=2,
        options=(Option("noise_std", positive_option("noise_std"), 0.25,
                        "gradient-noise standard deviation sigma > 0"),),
        algorithm=SignSGD,
        describe=lambda alg: {"problem": repr(alg)},
        # every coordinate moves by ±lr: a network needs a learning rate ~100× smaller than SGD's
        analysis=AnalysisSpec(lr=1 / 64, steps=400, network_lr=1e-3, on_landscape=_on_landscape),
    ),
)
"""The ``signsgd`` plug-in of the command line."""
