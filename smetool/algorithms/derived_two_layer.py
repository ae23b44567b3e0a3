"""Derived-SME plug-ins on the two-layer dropout task: dropout with mini-batches
(``dropout-sgd``) and DropConnect (``dropconnect``), their SMEs from
:func:`~smetool.algorithms.derive.derive_sme` with the noise enumerated exactly.

Neither SME is written by hand: the update ``A(θ, ξ)`` is the closed-form gradient of the step's
random loss (:mod:`smetool.models.two_layer_updates`) and ``ξ`` a :class:`FiniteNoise` — dropout
masks × mini-batches, or DropConnect masks on the input weights — so ``b₀``, ``Σ`` and
``(∇b₀) b₀`` are exact sums over the support. The cost is one evaluation of ``A`` per support
point and path, so the default networks are small (``2^m × C(n + B − 1, B)`` points for
dropout-sgd, ``2^{m d}`` for DropConnect).

References
----------
Q. Li, C. Tai, W. E, JMLR 20 (2019) (the SME, derived). N. Srivastava et al., JMLR 15 (2014)
(dropout). L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of neural networks
using DropConnect", ICML 2013.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..bibliography import (
    LI_TAI_E_2019,
    MILSTEIN_1986,
    SRIVASTAVA_2014_DROPOUT,
    WAN_2013_DROPCONNECT,
    ZHANG_2024_DROPOUT,
    Reference,
)
from ..checks import check_batch_size, check_keep_prob, check_positive_int
from ..models.dropout_problem import DropoutProblem, default_problem
from ..models.two_layer_updates import DropConnectUpdate, DropoutMiniBatchUpdate
from .base import TestFunction
from .derive_batch import BatchMean, support_for
from .derive_core import DifferentiableUpdate, Support
from .derived import DerivedAlgorithm
from .noise_laws import FiniteNoise
from .observables import Coordinate, SquaredNorm
from .spec import Option, PluginSpec, positive_int_option

__all__ = ["DropoutSGD", "DropConnect", "CovarianceSplit", "covariance_split",
           "dropout_sgd_problem", "dropconnect_problem", "PLUGINS"]

# The model layer's updates give their directional derivatives in closed form (the contract of
# DifferentiableUpdate, which lives a layer up): declared here, so derive_sme skips forward-mode AD.
DifferentiableUpdate.register(DropoutMiniBatchUpdate)
DifferentiableUpdate.register(DropConnectUpdate)


class _OutputAt:
    """``f_θ(x)`` at one input (bias feature appended): ``(P, D) -> (P,)``."""

    def __init__(self, problem: DropoutProblem, x: float):
        self.net = problem.net
        self.X = torch.tensor([[x, 1.0] if problem.bias else [x]], dtype=torch.float64)

    def __call__(self, theta: Tensor) -> Tensor:
        return self.net.forward(theta, self.X.to(theta))[:, 0]


class _OutputNormSq:
    """``‖a‖²``, the squared norm of the output weights."""

    def __init__(self, m: int):
        self.m = m

    def __call__(self, theta: Tensor) -> Tensor:
        return (theta[:, : self.m] ** 2).sum(dim=1)


def probe_coordinate(algorithm: DerivedAlgorithm) -> int:
    """The coordinate of the largest ``|(∇b₀) b₀|`` at ``θ0``: where an order-1 SME's error grows
    fastest (the one-step difference of gradient descent and its flow)."""
    assert isinstance(algorithm.law, FiniteNoise)
    support = support_for(algorithm.update, algorithm.law)
    theta0 = algorithm.x0.unsqueeze(0)
    return int(support.directional(theta0, support.mean(theta0))[0].abs().argmax())


class DropoutSGD(DerivedAlgorithm):
    """Dropout SGD on the two-layer network: one dropout mask per step (keep probability ``p``,
    multipliers ``b/p``) shared by a mini-batch of ``B`` examples drawn with replacement,

    ``θ_{k+1} = θ_k − lr ∇_θ (1/2B) Σ_{j ≤ B} (f_θ(x_{i_j}; mask) − y_{i_j})²``,

    and its SMEs of orders 1 and 2, derived (:func:`derive_sme`) with the noise
    ``masks × mini-batches`` enumerated exactly (``2^m · C(n + B − 1, B)`` support points).
    ``b₀ = −∇L_S`` (the expected dropout loss of full-batch dropout); ``Σ`` carries the dropout
    noise, the mini-batch noise and their interaction (:meth:`noise_split`).

    Parameters
    ----------
    problem : DropoutProblem
        The data, network and keep probability.
    theta0 : Tensor, (D,)
    batch_size : int
        ``B`` in ``[1, n]``.

    References
    ----------
    N. Srivastava et al., JMLR 15 (2014); Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024 (the
    full-batch dropout SME); Q. Li, C. Tai, W. E, JMLR 20 (2019) (the derivation).
    """

    name = "dropout-sgd"
    references: ClassVar[tuple[Reference, ...]] = (SRIVASTAVA_2014_DROPOUT, ZHANG_2024_DROPOUT,
                                                   LI_TAI_E_2019, MILSTEIN_1986)

    def __init__(self, problem: DropoutProblem, theta0: Tensor, *, batch_size: int = 1):
        if not isinstance(problem, DropoutProblem):
            raise TypeError(f"`problem` must be a DropoutProblem; got {type(problem).__name__}.")
        self.problem = problem
        self.batch_size = check_batch_size(batch_size, problem.n_points, self.name)
        law = FiniteNoise.product(FiniteNoise.bernoulli_masks(problem.width, problem.keep_prob),
                                  FiniteNoise.minibatches(problem.n_points, self.batch_size))
        update = BatchMean(DropoutMiniBatchUpdate(problem.net, problem.X, problem.y))
        super().__init__(update, law, theta0, {"R_S": problem.loss}, name=self.name)
        j = probe_coordinate(self)
        tests: dict[str, TestFunction] = {"f(0)": _OutputAt(problem, 0.0),
                                          "a_norm_sq": _OutputNormSq(problem.width),
                                          f"theta[{j}]": Coordinate(j)}
        self._tests = tests
        problem.net.warn_if_not_smooth("the derived dropout-sgd SME")

    def noise_split(self, x: Tensor) -> CovarianceSplit:
        """``Σ`` split into the dropout part, the mini-batch part and their interaction."""
        assert isinstance(self.law, FiniteNoise)
        return covariance_split(self.update, self.law, x)

    def __repr__(self) -> str:
        return f"DropoutSGD({self.problem!r}, batch_size={self.batch_size})"


class DropConnect(DerivedAlgorithm):
    """Full-batch DropConnect GD on the two-layer network: every input weight ``W_rk`` (bias
    weights included) is multiplied by ``b/p`` with a fresh ``b ~ Bernoulli(p)`` per step and path,

    ``θ_{k+1} = θ_k − lr ∇_θ (1/2n) Σ_i (Σ_r a_r σ((M_r ⊙ w_r)·x_i) − y_i)²``,

    and its SMEs of orders 1 and 2, derived with the ``2^{m d}`` masks enumerated exactly. Unlike
    dropout, the expected loss has no closed form (``σ`` of a masked sum).

    Parameters
    ----------
    problem : DropoutProblem
        The data and network; its ``keep_prob`` is DropConnect's.
    theta0 : Tensor, (D,)

    References
    ----------
    L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, "Regularization of neural networks using
    DropConnect", ICML 2013; Q. Li, C. Tai, W. E, JMLR 20 (2019) (the derivation).
    """

    name = "dropconnect"
    references: ClassVar[tuple[Reference, ...]] = (WAN_2013_DROPCONNECT, LI_TAI_E_2019,
                                                   MILSTEIN_1986)

    def __init__(self, problem: DropoutProblem, theta0: Tensor):
        if not isinstance(problem, DropoutProblem):
            raise TypeError(f"`problem` must be a DropoutProblem; got {type(problem).__name__}.")
        self.problem = problem
        shape = (problem.width, problem.net.input_dim)
        law = FiniteNoise.bernoulli_masks(shape, problem.keep_prob)
        update = DropConnectUpdate(problem.net, problem.X, problem.y)
        super().__init__(update, law, theta0, {"R_S": problem.loss}, name=self.name)
        j = probe_coordinate(self)
        tests: dict[str, TestFunction] = {"R_S": problem.loss, "theta_norm_sq": SquaredNorm(),
                                          f"theta[{j}]": Coordinate(j)}
        self._tests = tests
        problem.net.warn_if_not_smooth("the derived DropConnect SME")

    def __repr__(self) -> str:
        return f"DropConnect({self.problem!r})"


@dataclass(frozen=True)
class CovarianceSplit:
    """The covariance of ``A(x, (ξ¹, ξ²))`` for independent ``ξ¹, ξ²`` split as in a two-way
    analysis of variance: ``A = μ + α(ξ¹) + β(ξ²) + γ(ξ¹, ξ²)`` with ``α = E[A | ξ¹] − μ``,
    ``β = E[A | ξ²] − μ`` and the interaction ``γ`` the rest. The three are uncorrelated, so
    ``Σ = Σ_α + Σ_β + Σ_γ`` exactly.

    Attributes
    ----------
    first, second, interaction, total : Tensor, (P, D, D)
    """

    first: Tensor
    second: Tensor
    interaction: Tensor
    total: Tensor

    def summary(self) -> dict[str, Any]:
        """Trace and Frobenius norm of each part (path 0), and each trace as a share of ``tr Σ``."""
        out: dict[str, Any] = {}
        total = float(torch.diagonal(self.total[0]).sum())
        for name in ("first", "second", "interaction", "total"):
            part = getattr(self, name)[0]
            trace = float(torch.diagonal(part).sum())
            out[name] = {"trace": trace, "frobenius": float(part.norm()),
                         "share": trace / total if total > 0 else float("nan")}
        return out


def covariance_split(update: Any, law: FiniteNoise, x: Tensor) -> CovarianceSplit:
    """:class:`CovarianceSplit` of ``Cov A(x, ξ)`` for a product ``law`` of two factors, exactly
    (every support point).

    Raises
    ------
    ValueError
        ``law`` is not a product of exactly two laws.
    """
    if not isinstance(law, FiniteNoise) or len(law.factors) != 2:
        raise ValueError("covariance_split: `law` must be a FiniteNoise.product of two laws; got "
                         f"{law!r}.")
    f1, f2 = law.factors
    A = torch.cat([blk for blk, _, _ in Support(update, law).blocks(x)], dim=1)
    P, D = x.shape
    A = A.reshape(P, f1.size, f2.size, D)
    w1 = f1.weights.to(A)
    w2 = f2.weights.to(A)
    mu = torch.einsum("pijd,i,j->pd", A, w1, w2)
    alpha = torch.einsum("pijd,j->pid", A, w2) - mu.unsqueeze(1)
    beta = torch.einsum("pijd,i->pjd", A, w1) - mu.unsqueeze(1)
    gamma = A - mu[:, None, None] - alpha.unsqueeze(2) - beta.unsqueeze(1)
    first = torch.einsum("pid,pie,i->pde", alpha, alpha, w1)
    second = torch.einsum("pjd,pje,j->pde", beta, beta, w2)
    inter = torch.einsum("pijd,pije,i,j->pde", gamma, gamma, w1, w2)
    centred = A - mu[:, None, None]
    total = torch.einsum("pijd,pije,i,j->pde", centred, centred, w1, w2)
    return CovarianceSplit(first, second, inter, total)


def dropout_sgd_problem(*, keep_prob: float = 0.9, width: int = 4, n_points: int = 8,
                        batch_size: int = 4, a_std: float = 0.1, target_scale: float = 5.0,
                        dtype: torch.dtype = torch.float64, device: Any = None) -> DropoutSGD:
    """The ``dropout-sgd`` task: :func:`~smetool.models.dropout_problem.default_problem` with
    ``a ~ N(0, 0.1²)`` and the target scaled by 5 (the dropout plug-in's verification settings)."""
    width = check_positive_int(width, "width")
    problem, theta0 = default_problem(dtype, n_points=n_points, width=width,
                                      keep_prob=check_keep_prob(keep_prob), a_std=a_std,
                                      target_scale=target_scale, device=device)
    return DropoutSGD(problem, theta0, batch_size=batch_size)


def dropconnect_problem(*, keep_prob: float = 0.9, width: int = 3, n_points: int = 8,
                        dtype: torch.dtype = torch.float64, device: Any = None) -> DropConnect:
    """The ``dropconnect`` task: the same data and initialisation as ``dropout-sgd``."""
    width = check_positive_int(width, "width")
    problem, theta0 = default_problem(dtype, n_points=n_points, width=width,
                                      keep_prob=check_keep_prob(keep_prob), a_std=0.1,
                                      target_scale=5.0, device=device)
    return DropConnect(problem, theta0)


def _dropout_sgd_factory(*, dtype: torch.dtype, device: Any, **options: Any) -> DropoutSGD:
    return dropout_sgd_problem(dtype=dtype, device=device, **options)


def _dropconnect_factory(*, dtype: torch.dtype, device: Any, **options: Any) -> DropConnect:
    return dropconnect_problem(dtype=dtype, device=device, **options)


_KEEP_PROB = Option("keep_prob", lambda t: check_keep_prob(float(t)), 0.9,
                    "keep probability p in (0, 1] (p = 0.9 drops 10 %)")

PLUGINS = (
    PluginSpec(
        name="dropout-sgd",
        factory=_dropout_sgd_factory,
        description="dropout with mini-batches on a two-layer tanh network; its SME derived "
                    "(masks × mini-batches enumerated exactly)",
        orders=(1, 2),
        lrs=(0.2, 0.16, 0.1, 0.08, 0.05, 0.04),
        horizon=0.8,
        n_paths=500,
        steps_per_lr=4,
        order_defaults={2: {"n_paths": 1_000}},
        options=(_KEEP_PROB,
                 Option("width", positive_int_option("width"), 4, "hidden neurons m (2^m masks)"),
                 Option("n_points", positive_int_option("n_points"), 8, "data points n"),
                 Option("batch_size", positive_int_option("batch_size"), 4,
                        "mini-batch size B (examples drawn with replacement)")),
        algorithm=DropoutSGD,
        describe=lambda alg: {"problem": repr(alg), "noise": repr(alg.law)},
    ),
    PluginSpec(
        name="dropconnect",
        factory=_dropconnect_factory,
        description="DropConnect (masks on the input weights) on a two-layer tanh network; its "
                    "SME derived (masks enumerated exactly; Wan et al., ICML 2013)",
        orders=(1, 2),
        lrs=(0.2, 0.16, 0.1, 0.08, 0.05, 0.04),
        horizon=0.8,
        n_paths=500,
        steps_per_lr=4,
        order_defaults={2: {"n_paths": 800}},
        options=(_KEEP_PROB,
                 Option("width", positive_int_option("width"), 3, "hidden neurons m (2^(m d) masks)"),
                 Option("n_points", positive_int_option("n_points"), 8, "data points n")),
        algorithm=DropConnect,
        describe=lambda alg: {"problem": repr(alg), "noise": repr(alg.law)},
    ),
)
"""The ``dropout-sgd`` and ``dropconnect`` plug-ins of the command line."""
