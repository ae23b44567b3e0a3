"""The SMEs of dropout GD on a network: exact (last-layer dropout, squared loss) and sampled.

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024. Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of
stochastic gradient algorithms I", JMLR 20 (2019) (the order-2 drift).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import check_lr, check_positive_int
from ..models.net_dropout import NetDropoutModel
from ..models.net_dropout_exact import LastLayerDropout
from ..sde import SDE, NoiseKind, SampledDriftSDE

__all__ = ["NetDropoutSME", "SampledNetDropoutSME", "check_order"]


def check_order(order: int, orders: tuple[int, ...]) -> int:
    """``order`` if it is one of ``orders``."""
    if isinstance(order, bool) or order not in orders:
        raise ValueError(f"`order` must be one of {orders}; got {order!r}.")
    return int(order)


class NetDropoutSME(SDE):
    """The SME of dropout GD on a network with last-layer dropout and the squared loss (exact).

    * order 1: ``dΘ = −∇L_S dt + √lr F(Θ) dW``;
    * order 2: drift ``−∇L_S − (lr/2) ∇²L_S ∇L_S`` (Hessian–vector product by ``torch.func.jvp``).

    GENERAL noise with the polynomial factor ``F`` (``M = m(m+1)/2``, ``F Fᵀ = Σ``), applied
    matrix-free (:meth:`diffusion_product`, one vector–Jacobian product per path).

    Parameters
    ----------
    exact : LastLayerDropout
    lr : float
    order : {1, 2}
    regularized : bool
        ``False`` drops ``R_1`` from the drift (``−∇R_S``): a wrong SME, the negative control of
        an order check.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024; Q. Li, C. Tai, W. E, JMLR 20 (2019) for the order-2 drift.
    """

    noise_kind = NoiseKind.GENERAL

    def __init__(self, exact: LastLayerDropout, lr: float, order: int = 1, *,
                 regularized: bool = True):
        self.exact = exact
        self.lr = check_lr(lr)
        self.order = check_order(order, (1, 2))
        self.regularized = bool(regularized)
        self.noise_dim = exact.noise_dim

    def _grad(self, x: Tensor) -> Tensor:
        return self.exact.expected_loss_grad(x) if self.regularized else self.exact.model.loss_grad(x)

    def drift(self, t: float, x: Tensor) -> Tensor:
        """``−∇L_S`` (order 1) or ``−∇L_S − (lr/2) ∇²L_S ∇L_S`` (order 2), ``(P, D)``."""
        g = self._grad(x)
        if self.order == 1:
            return -g
        hv = (self.exact.expected_loss_hvp(x, g) if self.regularized
              else self.exact.model.loss_hvp(x, g))
        return -g - 0.5 * self.lr * hv

    def diffusion(self, t: float, x: Tensor) -> Tensor:
        """``√lr F(x)``, ``(P, D, M)``."""
        return math.sqrt(self.lr) * self.exact.noise_factor(x)

    def diffusion_product(self, t: float, x: Tensor, dW: Tensor) -> Tensor:
        """``√lr F(x) dW`` without forming ``F``, ``(P, D)``."""
        return math.sqrt(self.lr) * self.exact.noise_factor_matvec(x, dW)

    def __repr__(self) -> str:
        extra = "" if self.regularized else ", regularized=False"
        return f"NetDropoutSME(order={self.order}, lr={self.lr:g}{extra})"


class SampledNetDropoutSME(SampledDriftSDE):
    """The order-1 SME of dropout GD on any network, integrated with unbiased estimators.

    ``sample_drift`` is ``−(1/K) Σ_j ∇R_S^drop(θ; η_j)`` (mean ``−∇L_S``, covariance ``Σ/K``);
    ``sample_noise`` is ``√lr (2k)^{-1/2} Σ_{j≤k} (∇R_S^drop(θ; η_j) − ∇R_S^drop(θ; η'_j))``
    (mean 0, covariance exactly ``lr Σ``, symmetric, not Gaussian). With
    ``γ = 1/(lr K)`` Euler–Maruyama steps it as ``x + h b̂ + √(h − γ h²) ζ``: per step, mean and
    covariance exactly those of the SME's Euler–Maruyama step; weak order 1 in ``h``.

    Parameters
    ----------
    model : NetDropoutModel
    lr : float
    drift_masks : int
        ``K``; the SME step ``h`` must satisfy ``h ≤ lr K``.
    noise_pairs : int
        ``k``.
    regularized : bool
        ``False``: the drift is ``−∇R_S`` (no dropout), the negative control.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
    algorithm", ICLR 2024.
    """

    def __init__(self, model: NetDropoutModel, lr: float, *, drift_masks: int = 1,
                 noise_pairs: int = 1, regularized: bool = True):
        self.model = model
        self.lr = check_lr(lr)
        self.drift_masks = check_positive_int(drift_masks, "drift_masks")
        self.noise_pairs = check_positive_int(noise_pairs, "noise_pairs")
        self.regularized = bool(regularized)
        self.order = 1

    @property
    def drift_noise_ratio(self) -> float:
        """``γ = 1/(lr K)`` (0 for the unregularized control, whose drift is exact)."""
        return 1.0 / (self.lr * self.drift_masks) if self.regularized else 0.0

    def sample_drift(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        if not self.regularized:
            return -self.model.loss_grad(x)
        return -self.model.mask_gradient_samples(x, self.drift_masks, generator).mean(dim=0)

    def sample_noise(self, t: float, x: Tensor, generator: torch.Generator) -> Tensor:
        g = self.model.mask_gradient_samples(x, 2 * self.noise_pairs, generator)
        scale = math.sqrt(self.lr / (2 * self.noise_pairs))
        return scale * (g[0::2] - g[1::2]).sum(dim=0)

    def __repr__(self) -> str:
        extra = "" if self.regularized else ", regularized=False"
        return (f"SampledNetDropoutSME(lr={self.lr:g}, drift_masks={self.drift_masks}, "
                f"noise_pairs={self.noise_pairs}{extra})")
