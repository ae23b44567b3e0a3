"""The dropout plug-in: full-batch dropout gradient descent and its SMEs (orders 1 and 2).

Keep-probability convention: ``keep_prob = p`` is the probability of **keeping** a neuron (see
:mod:`smetool.models.dropout_problem`); ``p = 0.9`` is ``torch.nn.Dropout(0.1)``.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024. Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of
stochastic gradient algorithms I: mathematical foundations", JMLR 20 (2019) (the order-2 drift).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import LI_TAI_E_2019, ZHANG_2024_DROPOUT, ZHANG_XU_2024_IMPLICIT, Reference
from ..checks import check_keep_prob, check_lr
from ..models.dropout_problem import DropoutProblem, DropoutTerms, default_problem
from ..models.landscape import Landscape
from ..models.net_dropout import NetDropoutModel
from ..sde import SDE
from .base import Algorithm, NegativeControl, SeparableStochasticGradient, TestFunction, start_on_every_path
from .capabilities import HasLandscape, Regularizer, closed_form
from .dropout_net import net_dropout
from .dropout_noise import (
    NOISE_REPRESENTATIONS,
    CovarianceNoise,
    DropoutNoise,
    FactorNoise,
    GaussianNoise,
    MaskPairNoise,
    as_dropout_noise,
)
from .gradient import GradientFlow
from .spec import AnalysisSpec, Option, PluginSpec, positive_int_option

__all__ = ["DropoutAlgorithm", "DropoutSME", "DropoutNoise", "FactorNoise", "GaussianNoise",
           "MaskPairNoise", "CovarianceNoise", "NOISE_REPRESENTATIONS", "PLUGINS"]


class DropoutSME(SDE):
    """The SME of full-batch dropout GD with learning rate ``lr``, in time ``t = k · lr``.

    * order 1: ``dΘ = −∇L_S(Θ) dt + √lr Σ(Θ)^{1/2} dW``;
    * order 2: ``dΘ = −∇(L_S + (lr/4) ‖∇L_S‖²)(Θ) dt + √lr Σ(Θ)^{1/2} dW``, whose drift is
      ``−∇L_S − (lr/2) ∇²L_S ∇L_S`` (the closed-form Hessian–vector product
      :meth:`DropoutProblem.expected_loss_hvp`, ``O(n m d)`` per path, no autograd).

    The diffusion has four representations (``noise``), all with covariance exactly ``lr Σ``:

    ``"factor"`` — GENERAL noise, ``diffusion = √lr F(θ)`` of shape ``(P, D, M)``,
        ``M = m(m+1)/2`` (:meth:`DropoutProblem.noise_factor`). ``F`` is polynomial in the
        network's terms, so for a smooth activation this is the exact Gaussian SME with smooth
        coefficients and any solver applies at its declared weak order — including
        :class:`~smetool.solvers.PlatenWeak2` (weak order 2), which is what an order-2 comparison
        needs to keep the solver error below ``lr²``. Cost per path and evaluation
        ``O(n m² d)`` time, ``O(m³ d)`` memory. Platen makes ``4M + 1`` evaluations per step
        (545 for ``m = 16``), hundreds of times the cost of a discrete step; for order-2
        checks on wide networks, Talay–Tubaro (Richardson) extrapolation of Euler–Maruyama,
        ``2 E g(X^{h/2}) − E g(X^h)``, with ``"gaussian"`` noise is far cheaper.
    ``"gaussian"`` — SAMPLED noise, ``ζ = √lr F z`` with ``z ~ N(0, I_M)`` drawn matrix-free in
        ``O(n m² + n m d)`` per path. The same law as the factor's Euler–Maruyama increment, but
        SAMPLED noise is integrated by Euler–Maruyama only: weak order 1 in the SDE step ``h``,
        so take ``h ≪ lr`` when the SME's own order 2 is to be resolved.
    ``"masks"`` — SAMPLED noise, ``ζ = √lr (2k)^{-1/2} Σ_j (G(η_j) − G(η'_j))`` from ``k`` pairs of
        dropout masks: exact mean 0 and covariance, zero odd moments, but not Gaussian (wrong
        fourth moment), so an Euler–Maruyama step with it is weak order 1 in ``h`` and no higher,
        whatever ``k``. Cost ``2k`` dropout gradients per path (``O(k n m d)``).
    ``"covariance"`` — COVARIANCE noise, ``diffusion = lr Σ(θ)`` ``(P, D, D)``
        (:meth:`DropoutProblem.noise_covariance`), factored by the solver at every evaluation
        (symmetric root, ``O(D³)`` per path). Brownian dimension ``D`` instead of ``M``, which makes
        Platen's ``4·dim + 1`` evaluations cheaper when ``D < M``; the root is smooth only where
        ``Σ`` is positive definite (``rank Σ ≤ min(D, M)``), so prefer ``"factor"`` for weak
        order 2 unless that is known.

    Parameters
    ----------
    problem : DropoutProblem
    lr : float
        The learning rate ``ε`` of the discrete algorithm.
    order : {1, 2}
    noise : DropoutNoise or str
        :class:`FactorNoise` (default), :class:`GaussianNoise`, :class:`MaskPairNoise` or
        :class:`CovarianceNoise`, or its name in :data:`NOISE_REPRESENTATIONS`.
    n_pairs : int
        ``k`` when ``noise="masks"`` is given by name.

    References
    ----------
    Zhang, Li, Luo & Xu (ICLR 2024); Li, Tai & E (JMLR 2019) for the order-2 drift.
    """

    def __init__(self, problem: DropoutProblem, lr: float, order: int = 1, *,
                 noise: DropoutNoise | str = "factor", n_pairs: int = 1):
        if not isinstance(problem, DropoutProblem):
            raise TypeError(f"`problem` must be a DropoutProblem; got {type(problem).__name__}.")
        self.lr = check_lr(lr)
        if order not in (1, 2) or isinstance(order, bool):
            raise ValueError(f"`order` must be 1 or 2; got {order!r}.")
        self.problem = problem
        self.order = int(order)
        self.noise = as_dropout_noise(noise, n_pairs)
        self.noise_kind = self.noise.kind
        self.noise_dim = self.noise.noise_dim(problem)
        self._memo: tuple[Tensor, int, DropoutTerms] | None = None
        self._noise_memo: tuple[Tensor, Tensor, tuple[int, int, int], Tensor] | None = None

    def terms(self, x: Tensor) -> DropoutTerms:
        """The network terms of ``x``, computed once per state: a scheme evaluates the drift and
        the noise at the same state (the same tensor, unmodified), which then share them."""
        memo = self._memo
        if memo is not None and memo[0] is x and memo[1] == x._version:
            return memo[2]
        terms = self.problem.terms(x)
        self._memo = (x, x._version, terms)
        return terms

    def drift(self, t: float, x: Tensor) -> Tensor:
        """``−∇L_S`` (order 1) or ``−∇L_S − (lr/2) ∇²L_S ∇L_S`` (order 2), shape ``(P, D)``."""
        terms = self.terms(x)
        grad = self.problem.expected_loss_grad(x, terms)
        if self.order == 1:
            return -grad
        return -grad - 0.5 * self.lr * self.problem.expected_loss_hvp(x, grad, terms)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        """``√lr F(x)`` ``(P, D, M)`` (factor) or ``lr Σ(x)`` ``(P, D, D)`` (covariance)."""
        return self.noise.diffusion(self.problem, self.lr, x)

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        """A draw with covariance ``lr Σ(x)``, ``(P, D)`` (Gaussian or mask-pair noise)."""
        return self.noise.sample(self.problem, self.lr, x, generator)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        """``√lr F(x) dW`` without forming ``F`` (factor noise), ``(P, D)`` for ``dW (P, M)``.

        Euler–Maruyama and :class:`~smetool.solvers.SmallNoiseHeun` use this instead of
        :meth:`diffusion`: ``O(n m² + n m d)`` per path instead of ``O(n m² d + m³ d)``, with the
        Brownian increments (and so coupling across step sizes) unchanged. The last product is
        kept: the coupled loop asks for the noise of a step for the tangent and the scheme asks
        again (the same, unmodified tensors), which then costs nothing.
        """
        memo = self._noise_memo
        if (memo is not None and memo[0] is x and memo[1] is dW
                and memo[2] == (x._version, dW._version, memo[3]._version)):
            return memo[3]
        out = self.noise.product(self.problem, self.lr, x, dW, self.terms(x))
        self._noise_memo = (x, dW, (x._version, dW._version, out._version), out)
        return out

    def euler_increment(self, t: float, x: Tensor, h: float, dW: Tensor) -> Tensor:
        """``b(x) h + √lr F(x) dW`` (factor noise); for order 1 in one contraction
        (:meth:`DropoutProblem.euler_increment`), for order 2 drift plus noise."""
        if self.order == 1 and isinstance(self.noise, FactorNoise):
            return self.problem.euler_increment(x, h, math.sqrt(self.lr) * dW, self.terms(x))
        return super().euler_increment(t, x, h, dW)

    def __repr__(self) -> str:
        return f"DropoutSME(order={self.order}, lr={self.lr:g}, noise={self.noise!r})"


class DropoutAlgorithm(SeparableStochasticGradient, HasLandscape):
    """Full-batch dropout gradient descent on a two-layer network, paired with its SMEs.

    One step is ``θ ← θ − lr ∇_θ R_S^drop(θ; η)`` with a fresh dropout mask per path (keep
    probability ``p``, multipliers ``b/p``).

    Parameters
    ----------
    problem : DropoutProblem
        The data, network and keep probability.
    theta0 : Tensor, (D,)
        The common initial point of the discrete paths and of the SME.

    Raises
    ------
    TypeError
        If ``problem`` is not a :class:`DropoutProblem`.
    ValueError
        If ``theta0`` does not have shape ``(D,)`` or is not finite.

    References
    ----------
    Zhang, Li, Luo & Xu, ICLR 2024 (the dropout SME); Zhang & Xu, TPAMI 2024 (its implicit
    regularizer ``R_1``).

    Examples
    --------
    >>> algo = DropoutAlgorithm.default()
    >>> x = algo.initial_state(8)
    >>> x = algo.step(x, 0.05, torch.Generator().manual_seed(0))
    >>> sde = algo.sme(0.05, order=2)
    >>> sde.drift(0.0, x).shape
    torch.Size([8, 48])
    """

    name = "dropout"
    references: ClassVar[tuple[Reference, ...]] = (ZHANG_2024_DROPOUT, LI_TAI_E_2019)
    sme_orders = (1, 2)

    def __init__(self, problem: DropoutProblem, theta0: Tensor):
        if not isinstance(problem, DropoutProblem):
            raise TypeError(f"`problem` must be a DropoutProblem; got {type(problem).__name__}.")
        theta0 = torch.as_tensor(theta0)
        D = problem.n_params
        if theta0.shape != (D,):
            raise ValueError(f"`theta0` must have shape ({D},); got {tuple(theta0.shape)}.")
        if not theta0.is_floating_point() or not bool(torch.isfinite(theta0).all()):
            raise ValueError("`theta0` must be a finite floating-point tensor.")
        self.problem = problem
        self.theta0 = theta0

    @classmethod
    def default(cls, dtype: torch.dtype = torch.float64, **kwargs) -> DropoutAlgorithm:
        """The plug-in on :func:`~smetool.models.dropout_problem.default_problem` (same keywords)."""
        problem, theta0 = default_problem(dtype, **kwargs)
        return cls(problem, theta0)

    @classmethod
    def verification_default(cls, dtype: torch.dtype = torch.float64, **kwargs) -> DropoutAlgorithm:
        """The problem of ``smetool verify dropout``: the default task with ``a ~ N(0, 0.1²)``
        and the target scaled by 5 (other keywords as :func:`default_problem`).

        Why these settings (measured, see ``docs/numerics.md``): an order-1 SME's weak error is,
        to leading order, the gradient-descent-versus-gradient-flow term
        ``−½ ∇L_Sᵀ ∇²L_S ∇g`` (the noise first enters at ``O(ε²)``), so the order-1 check needs a
        strong drift phase and modest noise. A small initial output layer keeps the dropout noise
        (``Σ ≈ v/n² Σ_ij ⟨h_i, h_j⟩ ∇f_i ∇f_jᵀ``, quadratic in the neuron outputs) small while the
        scaled target keeps the residuals, and so the drift, large; with the horizon ``T = 0.2`` the
        first-order error has not yet been damped by the contracting dynamics. On the unscaled task
        with ``a ~ N(0, 0.5²)`` the error is dominated by ``O(ε²)`` noise terms down to
        ``ε = 0.025`` (the pre-asymptotic trap).
        """
        kwargs.setdefault("a_std", 0.1)
        kwargs.setdefault("target_scale", 5.0)
        return cls.default(dtype, **kwargs)

    def initial_state(
        self,
        n_paths: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``θ0`` on every path, ``(P, D)`` (a fresh tensor); dtype/device default to ``θ0``'s."""
        return start_on_every_path(self.theta0, n_paths, dtype=dtype, device=device)

    def draw_gradient_noise(self, n_paths: int, generator: torch.Generator, *,
                            dtype: torch.dtype, device: torch.device) -> Tensor:
        """The dropout multipliers ``b/p`` of one step, ``(P, m)`` (independent of ``θ``)."""
        return self.problem.sample_scale(n_paths, generator, dtype=dtype, device=device)

    def gradient_with(self, x: Tensor, noise: Tensor) -> Tensor:
        """``∇_θ R_S^drop(θ; η)`` for the multipliers ``noise = 1 + η``, ``(P, D)``."""
        return self.problem.dropout_loss_grad(x, noise)[1]

    def mean_gradient(self, x: Tensor) -> Tensor:
        """``E_η ∇R_S^drop = ∇L_S``, closed form, ``(P, D)``."""
        return self.problem.expected_loss_grad(x)

    def gradient_covariance(self, x: Tensor) -> Tensor:
        """``Σ(θ) = Cov_η ∇R_S^drop``, closed form, ``(P, D, D)``."""
        return self.problem.noise_covariance(x)

    def step(self, x: Tensor, lr: float, generator: torch.Generator) -> Tensor:
        """One dropout GD step on every path (see :meth:`DropoutProblem.step`)."""
        return self.problem.step(x, lr, generator)

    def sme(
        self, lr: float, order: int = 1, *, noise: DropoutNoise | str = "factor", n_pairs: int = 1
    ) -> DropoutSME:
        """The SME of the given order for learning rate ``lr``; see :class:`DropoutSME`.

        Parameters
        ----------
        lr : float
        order : {1, 2}
        noise : DropoutNoise or str
            Diffusion representation: :class:`FactorNoise` / ``"factor"`` (GENERAL, exact
            Gaussian SME, any solver), :class:`GaussianNoise` / ``"gaussian"`` (SAMPLED, exact
            Gaussian increments, Euler–Maruyama only), :class:`MaskPairNoise` / ``"masks"``
            (SAMPLED, exact covariance but non-Gaussian: weak order 1 in the SDE step) or
            :class:`CovarianceNoise` / ``"covariance"`` (COVARIANCE, ``lr Σ`` factored by the
            solver, ``O(D³)``).
        n_pairs : int
            Mask pairs per draw for ``noise="masks"`` given by name.

        Warns
        -----
        UserWarning
            For a non-smooth activation (the weak-approximation theory assumes a smooth one).
        """
        sde = DropoutSME(self.problem, lr, order, noise=noise, n_pairs=n_pairs)
        self.problem.net.warn_if_not_smooth("the dropout SME")
        return sde

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """For order 2 the default controls (the order-1 SME, the noise-free flow); for order 1
        the flow of ``R_S`` without the implicit regularizer ``R_1 = (1−p)/(2np) Σ h²``: its error
        is ``O(1)`` (slope 0) wherever ``R_1`` moves the path, which an order-1 check must see."""
        if order == 1:
            return (NegativeControl("no R_1", GradientFlow(self.problem, lr), 0.0,
                                    "the flow of R_S without the implicit regularizer R_1"),)
        return super().negative_controls(lr, order)

    def probe_coordinate(self) -> int:
        """The coordinate ``j`` of ``θ`` with the largest ``|(∇²L_S ∇L_S)_j|`` at ``θ0``.

        An order-1 SME's weak error for ``g(θ) = θ_j`` starts to accumulate at the rate
        ``½ (∇²L_S ∇L_S)_j`` (the one-step difference between gradient descent and gradient flow),
        so this is the coordinate whose first-order error is best resolved.
        """
        theta0 = self.theta0.unsqueeze(0)
        grad = self.problem.expected_loss_grad(theta0)
        rate = self.problem.expected_loss_hvp(theta0, grad)[0].abs()
        return int(rate.argmax())

    def test_functions(self) -> dict[str, TestFunction]:
        """``"R_S"`` (training loss), ``"L_S"`` (expected dropout loss), ``"theta_norm_sq"``
        (``‖θ‖²``) and ``"theta[j]"``, the coordinate :meth:`probe_coordinate` picks; each
        ``(P, D) -> (P,)``."""
        problem = self.problem
        j = self.probe_coordinate()
        return {
            "R_S": problem.loss,
            "L_S": problem.expected_loss,
            "theta_norm_sq": lambda x: (x * x).sum(dim=1),
            f"theta[{j}]": lambda x: x[:, j],
        }

    def landscape(self) -> DropoutProblem:
        """The training loss ``R_S`` of the two-layer network (the problem)."""
        return self.problem

    def implicit_regularizer(self, lr: float) -> Regularizer:
        """``R_1 = L_S − R_S = (1−p)/(2np) Σ_i Σ_r a_r² σ(w_r·x_i)²``, exact: the SME's drift is
        ``−∇(R_S + R_1)`` (Zhang & Xu, TPAMI 2024)."""
        return Regularizer("R_1", "dropout's explicit regularizer E R_S^drop - R_S",
                           closed_form(self.problem.implicit_regularizer), (ZHANG_XU_2024_IMPLICIT,))

    def __repr__(self) -> str:
        return f"DropoutAlgorithm({self.problem!r})"


def _factory(*, dtype: torch.dtype, device: Any, keep_prob: float, width: int) -> DropoutAlgorithm:
    return DropoutAlgorithm.verification_default(dtype=dtype, device=device, keep_prob=keep_prob,
                                                 width=width)


def _analysis_factory(*, dtype: torch.dtype, device: Any, keep_prob: float,
                      width: int) -> DropoutAlgorithm:
    # the analyses' 1-D task: the target unscaled (the verification problem scales it by 5)
    return DropoutAlgorithm.default(dtype=dtype, device=device, keep_prob=keep_prob, width=width)


def dropout_on(landscape: Landscape, theta0: Tensor, **options: Any) -> Algorithm:
    """Full-batch dropout GD on a network landscape: the two-layer problem
    (:class:`DropoutAlgorithm`) or an ``nn.Module`` with dropout layers
    (:func:`~smetool.algorithms.dropout_net.net_dropout`); the keep probability and the width are
    the network's, so ``options`` are not used.

    Raises
    ------
    TypeError
        Another landscape (dropout needs a network with dropout layers).
    """
    if isinstance(landscape, DropoutProblem):
        return DropoutAlgorithm(landscape, theta0)
    if isinstance(landscape, NetDropoutModel):
        return net_dropout(landscape, theta0)
    raise TypeError(f"dropout needs a network with dropout layers (a DropoutProblem or a "
                    f"NetDropoutModel); got {type(landscape).__name__}.")


def _keep_prob_option(text: str) -> float:
    return check_keep_prob(float(text))


KEEP_PROB = Option("keep_prob", _keep_prob_option, 0.9,
                   "dropout keep probability p in (0, 1] (p = 0.9 drops 10% of the neurons)")
WIDTH = Option("width", positive_int_option("width"), 16, "hidden neurons m")

PLUGINS = (
    PluginSpec(
        name="dropout",
        factory=_factory,
        description="dropout GD on a two-layer tanh network (Zhang, Li, Luo & Xu, ICLR 2024)",
        orders=(1, 2),
        lrs=(0.05, 0.04, 0.025, 0.02, 0.0125, 0.01),
        horizon=0.2,
        n_paths=500,
        steps_per_lr=4,
        order_defaults={2: {"lrs": (0.05, 0.04, 0.025, 0.02, 0.0125, 0.01, 0.005),
                            "n_paths": 1500, "steps_per_lr": 4}},
        options=(KEEP_PROB, WIDTH),
        algorithm=DropoutAlgorithm,
        describe=lambda alg: {"problem": repr(alg.problem)},
        analysis=AnalysisSpec(lr=0.2, steps=20_000, on_landscape=dropout_on,
                              factory=_analysis_factory),
    ),
)
"""The ``dropout`` plug-in of the command line."""

