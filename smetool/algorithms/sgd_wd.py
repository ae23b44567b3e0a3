"""The ``sgd-wd`` plug-in: SGD with weight decay on a scale-invariant loss and its SME.

SGD with weight decay ``λ``, ``w_{k+1} = w_k − lr (∇L_z(w_k) + λ w_k)``, on the scale-invariant
loss of :class:`~smetool.models.scale_invariant.NormalisedQuadratic` (gradient and noise orthogonal
to ``w``, of size ``1/‖w‖``). Li, Lyu & Arora (2020) model it by the SDE (quoted, in steps)
``dW = −η(∇L(W) + λW) dt + η Σ_W^{1/2} dB``; in the time ``t = k · lr`` of the plug-in contract
(``η = lr``) this is the order-1 SME

    dW = −(∇L(W) + λW) dt + √lr Σ(W)^{1/2} dB,      Σ(w) = σ² P_w / ‖w‖².

The step's mean ``w − lr (∇L(w) + λw)`` and covariance ``lr² σ² P_w/‖w‖²`` are exact, so the plug-in
is a :class:`~smetool.algorithms.SeparableStochasticGradient` for both noise laws.

**A state-dependent time scale.** The contract's clock is the algorithm's step (``t = k · lr``),
but the loss sees only the direction ``ŵ``, which moves by ``lr ∇ℓ/‖w‖²`` per step: its effective
learning rate is ``lr/‖w‖²`` (Li, Lyu & Arora's intrinsic view), and its noise ``lr σ/‖w‖²``. The SME
carries this in its coefficients (``∇L ∝ 1/‖W‖``, ``Σ ∝ 1/‖W‖²``), and its norm is deterministic:
``‖W_t‖⁴ = M∞ + (‖w_0‖⁴ − M∞) e^{−4λt}`` with the equilibrium ``M∞ = lr σ² (d − 1) / (2λ)`` (see
:mod:`smetool.exact.scale_invariant`). The weak-error constant and the SME solver's step are
governed by the smallest ``‖W‖`` over the horizon; the default horizon keeps
``‖W‖² ≥ e^{−2λT}‖w_0‖²`` well away from 0. Beyond ``T ~ 1/λ`` the norm approaches
``M∞^{1/4} ∝ lr^{1/4}`` and the angular speed ``∝ lr^{−1/2}`` grows as ``lr → 0``: the long-time
equilibrium regime of the paper is not a fixed-horizon weak approximation and is not what
``smetool verify sgd-wd`` tests.

References
----------
Z. Li, K. Lyu, S. Arora, "Reconciling modern deep learning with traditional optimization analyses:
the intrinsic learning rate", NeurIPS 2020. Q. Li, C. Tai, W. E, JMLR 20 (2019).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..bibliography import LI_LYU_ARORA_2020, LI_TAI_E_2019
from ..checks import check_lr, check_nonnegative
from ..exact.scale_invariant import ScaleInvariantNorms
from ..models.landscape import Landscape
from ..models.noisy_quadratic import as_matrix
from ..models.scale_invariant import NOISE_LAWS, NormalisedQuadratic
from ..sde import SDE, NoiseKind
from .base import NegativeControl, TestFunction
from .gradient import MinibatchSGD
from .observables import Coordinate, SquaredNorm
from .spec import AnalysisSpec, Option, PluginSpec

__all__ = ["SGDWeightDecay", "SGDWeightDecaySME", "PLUGINS"]


class SGDWeightDecaySME(SDE):
    """``dW = −(∇L(W) + λW) dt + √lr σ P_W / ‖W‖ dB`` (GENERAL noise, ``M = d``).

    :meth:`diffusion_product` applies the projection without forming the ``d × d`` matrix.

    References
    ----------
    Li, Lyu & Arora, NeurIPS 2020 (the SDE, in steps); Li, Tai & E, JMLR 2019 (order 1).
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, problem: NormalisedQuadratic, lr: float, weight_decay: float):
        self.problem, self.lr = problem, check_lr(lr, "SGDWeightDecaySME")
        self.weight_decay = check_nonnegative(weight_decay, "weight_decay", "SGDWeightDecaySME")
        self.noise_dim = problem.dim

    def drift(self, t: float, x: Tensor) -> Tensor:
        return -(self.problem.gradient(x) + self.weight_decay * x)

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        norm = x.norm(dim=1, keepdim=True)
        u = x / norm
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        P = eye - u.unsqueeze(2) * u.unsqueeze(1)
        return (math.sqrt(self.lr) * self.problem.noise_std) * P / norm.unsqueeze(2)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        norm = x.norm(dim=1, keepdim=True)
        u = x / norm
        return (math.sqrt(self.lr) * self.problem.noise_std) * self.problem.tangent(u, dW) / norm

    def __repr__(self) -> str:
        return f"SGDWeightDecaySME(lr={self.lr:g}, weight_decay={self.weight_decay:g})"




class SGDWeightDecay(MinibatchSGD):
    """SGD with weight decay on a :class:`NormalisedQuadratic`, paired with its SME.

    The step is :class:`~smetool.algorithms.gradient.MinibatchSGD`'s with the problem's tangent
    noise; the closed-form covariance, the SME and the norm dynamics are this class's.

    Parameters
    ----------
    problem : NormalisedQuadratic
    w0 : array-like, (d,)
        The common initial point (``w0 ≠ 0``).
    weight_decay : float
        ``λ ≥ 0``.

    Raises
    ------
    TypeError
        ``problem`` is not a :class:`NormalisedQuadratic`.
    ValueError
        A zero or non-finite ``w0``, a negative ``weight_decay``.

    References
    ----------
    Li, Lyu & Arora, NeurIPS 2020.

    Examples
    --------
    >>> algo = SGDWeightDecay.default()
    >>> w = algo.step(algo.initial_state(4), 0.05, torch.Generator().manual_seed(0))
    >>> algo.sme(0.05).drift(0.0, w).shape
    torch.Size([4, 3])
    """

    name = "sgd-wd"
    references = (LI_LYU_ARORA_2020, LI_TAI_E_2019)
    sme_orders = (1,)

    def __init__(self, problem: NormalisedQuadratic, w0: Any, weight_decay: float):
        if not isinstance(problem, NormalisedQuadratic):
            raise TypeError(f"SGDWeightDecay: `problem` must be a NormalisedQuadratic; got "
                            f"{type(problem).__name__}.")
        w0 = as_matrix(w0, "w0", (problem.dim,), "SGDWeightDecay", problem.A.dtype)
        if not float(w0.norm()) > 0:
            raise ValueError("SGDWeightDecay: `w0` must be non-zero (the loss is scale-invariant).")
        super().__init__(problem, w0, weight_decay)
        self.problem, self.w0 = problem, w0

    @classmethod
    def default(cls, *, weight_decay: float = 0.1, noise_std: float = 0.25, noise: str = "gaussian",
                dtype: torch.dtype = torch.float64) -> SGDWeightDecay:
        """The verification problem (``docs/numerics.md``): ``d = 3``, ``A = diag(1, 0, −1)``,
        ``b = 0`` (minimiser ``±e₃``), ``w0 = (0.3, 0.4, √0.75)`` of unit norm."""
        problem = NormalisedQuadratic(torch.diag(torch.tensor([1.0, 0.0, -1.0])), (0.0, 0.0, 0.0),
                                      noise_std, noise=noise, dtype=dtype)
        w0 = torch.tensor([0.3, 0.4, math.sqrt(0.75)], dtype=dtype)
        return cls(problem, w0, weight_decay)

    def gradient_covariance(self, x: Tensor) -> Tensor:
        """``σ² P_w / ‖w‖²``, exact for both laws, ``(P, d, d)``."""
        return self.problem.noise_covariance(x)

    def sme(self, lr: float, order: int = 1) -> SGDWeightDecaySME:
        """The order-1 SME; see :class:`SGDWeightDecaySME`."""
        if isinstance(order, bool) or order != 1:
            raise ValueError(f"sgd-wd: `order` must be 1; got {order!r}.")
        return SGDWeightDecaySME(self.problem, lr, self.weight_decay)

    def norms(self, cos_axis: int = 0) -> ScaleInvariantNorms:
        """The exact norm dynamics (:class:`~smetool.exact.ScaleInvariantNorms`) of this problem;
        ``cos_axis`` picks the ``e`` of the direction test function ``(e·ŵ)²``."""
        w0 = self.w0.double().cpu()
        n0 = float(w0 @ w0)
        return ScaleInvariantNorms(n0, self.weight_decay, self.problem.noise_std, self.problem.dim,
                                   float(w0[cos_axis]) ** 2 / n0)

    def exact_sme_expectations(self, lrs: Any, horizon: float, order: int
                               ) -> dict[str, list[float]]:
        """``E g(W_T)`` of the SME in closed form, where known: ``"norm_sq"``, from its
        deterministic norm law (Li, Lyu & Arora 2020; :meth:`norms`). The discrete side's norm is
        not closed-form when the loss is not flat."""
        if order != 1:
            raise ValueError(f"sgd-wd: `order` must be 1; got {order!r}.")
        law = self.norms()
        return {"norm_sq": [law.sme_moments(float(lr), float(horizon))["norm_sq"] for lr in lrs]}

    def test_functions(self) -> dict[str, TestFunction]:
        """``"norm_sq"`` (``‖w‖²``) and ``"w[2]"``; ``(P, d) -> (P,)``.

        Chosen by measurement (``docs/numerics.md``): functions of the direction alone (the loss,
        ``ŵ_i``, ``ŵ_0²``) have first-order error constants too small to resolve on this problem
        (with pure noise the exact ``(e·ŵ)²`` error is ``O(lr²)``,
        :mod:`smetool.exact.scale_invariant`), while the norm's variance is ``O(lr³)``
        (the noise is tangent), so ``‖w‖²`` is resolved with very few paths.
        """
        return {"norm_sq": SquaredNorm(), "w[2]": Coordinate(2)}

    def negative_controls(self, lr: float, order: int) -> tuple[NegativeControl, ...]:
        """The SME without weight decay: an ``O(λ)`` drift error at every ``lr`` (slope 0)."""
        return (NegativeControl("no weight decay", SGDWeightDecaySME(self.problem, lr, 0.0), 0.0,
                                "drops λW from the drift: the norm no longer shrinks"),)

    def __repr__(self) -> str:
        return f"SGDWeightDecay({self.problem!r}, weight_decay={self.weight_decay:g})"


def _factory(*, dtype: torch.dtype, device: Any, weight_decay: float, noise_std: float,
             noise: str) -> SGDWeightDecay:
    return SGDWeightDecay.default(weight_decay=weight_decay, noise_std=noise_std, noise=noise,
                                  dtype=dtype)


def _on_landscape(landscape: Landscape, theta0: Tensor, *, weight_decay: float, noise_std: float,
                  noise: str) -> MinibatchSGD:
    # on a network: minibatch SGD with weight decay (the noise is the landscape's minibatch law)
    return MinibatchSGD(landscape, theta0, weight_decay)


def _nonnegative(name: str):
    def parse(text: str) -> float:
        return check_nonnegative(float(text), name)
    return parse


def _noise_law(text: str) -> str:
    if text not in NOISE_LAWS:
        raise ValueError(f"`noise` must be one of {', '.join(NOISE_LAWS)}; got {text!r}.")
    return text


PLUGINS = (
    PluginSpec(
        name="sgd-wd",
        factory=_factory,
        description="SGD with weight decay on a scale-invariant (normalised) loss "
        "(Li, Lyu & Arora, NeurIPS 2020)",
        orders=(1,),
        lrs=(1 / 32, 1 / 64, 1 / 128, 1 / 256),
        horizon=1.0,
        n_paths=2_000,
        steps_per_lr=2,
        options=(Option("weight_decay", _nonnegative("weight_decay"), 0.1, "weight decay lambda"),
                 Option("noise_std", _nonnegative("noise_std"), 0.25, "gradient-noise scale sigma"),
                 Option("noise", _noise_law, "gaussian", "tangent noise law: gaussian or sphere")),
        algorithm=SGDWeightDecay,
        describe=lambda alg: {"problem": repr(alg)},
        analysis=AnalysisSpec(lr=1 / 32, steps=400, network_options={"weight_decay": 1e-3},
                              on_landscape=_on_landscape),
    ),
)
"""The ``sgd-wd`` plug-in of the command line."""
