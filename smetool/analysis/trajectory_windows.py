"""Why the trajectory variance–flatness relations depend on the window: measurements.

On *random trajectory data* the papers fit the variance of the iterates along their principal
directions (over a window of steps near the end of training) against the flatness of the loss
along those directions (Feng & Tu 2021; Zhang et al., ICLR 2024). If the iterates fluctuated
about a fixed minimum, the window would only have to be long compared with the relaxation time
``1/(ε λ)`` of the directions analysed. Where the expected loss ``L_S`` has directions of
(nearly) zero curvature that the dropout noise still excites, nothing relaxes there: the iterates
random-walk (variance ∝ window length) or drift (∝ length²), and for a long enough window those
flattest directions carry the largest variance, turning the relation's sign. This module measures
that on any :class:`~smetool.models.landscape.Landscape`:

* :func:`window_scan` — the per-seed slopes for a range of window lengths, raw and linearly
  detrended, with the variance along the principal directions as a function of the window;
* :func:`linear_surrogate` — given the Hessian ``H_L`` of the loss the noise-free dynamics descend
  (``L_S`` for dropout) and the exact noise factor ``F`` (``Σ = F Fᵀ``): the linearized dynamics
  ``x_{k+1} = (I − ε H_L⁺) x_k + ε F z_k`` (negative eigenvalues set to 0), ``z ~ N(0, I)``: no
  drift, no nonlinearity. If it reproduces the window dependence, the noise structure and the
  flat directions suffice to explain it;
* :func:`detrend` and :func:`variance_growth` — a window without its linear trend, and the
  growth exponent of the variance along given directions (0 stationary, 1 diffusion, 2 drift);
* :func:`flat_noise_share` — the share of ``tr Σ`` in the directions of ``H_L`` too flat to relax
  within ``T`` steps (``ε λ T < 1``).

References
----------
Y. Feng, Y. Tu, "The inverse variance–flatness relation in stochastic gradient descent is critical
for finding flat minima", PNAS 118(9), 2021 (PCA of the weights over a window in the steady
state, interval flatness at level ``e L``). Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024
(random trajectory data, interval level ``2 L``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_lr, check_positive_int
from ..integrate import solve
from ..models.landscape import Landscape
from ..noise import psd_factor
from ..sde import FunctionSDE, NoiseKind
from .variance_flatness import sample_principal_components, variance_flatness_from_samples

__all__ = ["WindowScan", "window_scan", "linear_surrogate", "flat_noise_share", "detrend",
           "variance_growth"]


def variance_growth(window: Tensor, directions: Tensor, factor: int = 10) -> Tensor:
    """How the spread along ``directions`` grows with the window: ``log(v_T / v_{T/f}) / log f``.

    ``v_T`` is the variance of the projections over the whole window ``(T, P, D)``, ``v_{T/f}``
    its mean over the ``f`` consecutive sub-windows. A stationary process gives 0 (once ``T/f``
    exceeds its correlation time), diffusion 1, a steady drift 2.

    Returns
    -------
    Tensor, (P, K)
    """
    T = window.shape[0]
    if T < 2 * factor:
        raise ValueError(f"the window must have at least {2 * factor} steps; got {T}.")
    proj = torch.einsum("tpd,pkd->tpk", window, directions)
    v_full = proj.var(dim=0)
    sub = T // factor
    parts = proj[: sub * factor].reshape(factor, sub, *proj.shape[1:])
    v_sub = parts.var(dim=1).mean(dim=0)
    return torch.log(v_full / v_sub) / math.log(factor)


def detrend(window: Tensor) -> Tensor:
    """``window (T, P, D)`` minus each coordinate's least-squares line in the step index.

    The line passes through the window mean at the middle step, so the mean (the centre of the
    flatness measurements) is unchanged; a steady drift contributes nothing to the covariance.
    """
    T = window.shape[0]
    t = torch.arange(T, dtype=window.dtype, device=window.device)
    t = t - t.mean()
    slope = torch.einsum("t,tpd->pd", t, window) / (t * t).sum()
    return window - t[:, None, None] * slope


@dataclass(frozen=True)
class WindowScan:
    """Per-seed variance–flatness slopes on trajectory windows of several lengths.

    Attributes
    ----------
    windows : tuple of int
        Window lengths ``T`` (the last ``T`` steps of one run).
    slopes : dict of str to Tensor, (len(windows), P)
        ``"interval"``, ``"hessian"``, ``"interval_detrended"``, ``"hessian_detrended"`` and,
        for each extra level ``c``, ``"interval_level_c"``.
    pc_variance : Tensor, (len(windows), P, K)
        Variance along the principal directions of the *longest* window, over windows of each
        length (mean over the consecutive sub-windows): how the spread grows with ``T``.
    """

    windows: tuple
    slopes: dict
    pc_variance: Tensor

    def to_dict(self) -> dict:
        return {"windows": list(self.windows),
                "slopes": {k: v.tolist() for k, v in self.slopes.items()},
                "pc_variance": self.pc_variance.tolist()}


def window_scan(landscape: Landscape, trajectory: Tensor, windows: tuple[int, ...], *,
                n_components: int = 10, level: float = 2.0,
                extra_levels: tuple[float, ...] = ()) -> WindowScan:
    """The trajectory relations on the last ``T`` steps of ``trajectory (T_max, P, D)`` per ``T``.

    Parameters
    ----------
    landscape : Landscape
        Supplies the loss ``R_S`` and its Hessian–vector products.
    trajectory : Tensor, (T_max, P, D)
        Consecutive iterates (e.g. :attr:`~smetool.algorithms.training.Trajectory.window`,
        :func:`linear_surrogate`).
    windows : tuple of int
        Lengths, each in ``[n_components + 1, T_max]``.
    n_components, level
        As in :func:`~smetool.analysis.variance_flatness.variance_flatness`.
    extra_levels : tuple of float
        Further interval levels ``c`` for the raw windows (e.g. ``math.e``, Feng & Tu's).

    Returns
    -------
    WindowScan
    """
    T_max = trajectory.shape[0]
    windows = tuple(sorted(int(w) for w in windows))
    if not windows or windows[0] <= n_components or windows[-1] > T_max:
        raise ValueError(f"`windows` must lie in [{n_components + 1}, {T_max}]; got {windows!r}.")
    keys = ["interval", "hessian", "interval_detrended", "hessian_detrended"] + [
        f"interval_level_{c:g}" for c in extra_levels]
    slopes: dict[str, list] = {k: [] for k in keys}
    for T in windows:
        for tag, part in (("", trajectory[-T:]), ("_detrended", detrend(trajectory[-T:]))):
            vf = variance_flatness_from_samples(part.transpose(0, 1), None, landscape.loss,
                                                landscape.hvp, n_components=n_components,
                                                level=level)
            slopes[f"interval{tag}"].append(vf.slopes("interval"))
            slopes[f"hessian{tag}"].append(vf.slopes("hessian"))
        for c in extra_levels:
            vf = variance_flatness_from_samples(trajectory[-T:].transpose(0, 1), None,
                                                landscape.loss, landscape.hvp,
                                                n_components=n_components, level=c)
            slopes[f"interval_level_{c:g}"].append(vf.slopes("interval"))
    _, pc = sample_principal_components(trajectory[-windows[-1]:].transpose(0, 1), n_components)
    proj = torch.einsum("tpd,pkd->tpk", trajectory[-windows[-1]:], pc.directions)
    growth = []
    for T in windows:
        n = proj.shape[0] // T
        parts = proj[proj.shape[0] - n * T:].reshape(n, T, *proj.shape[1:])
        growth.append(parts.var(dim=1).mean(dim=0))
    return WindowScan(windows, {k: torch.stack(v) for k, v in slopes.items()},
                      torch.stack(growth))


def _clamped_eigen(hessian: Tensor) -> tuple[Tensor, Tensor]:
    return torch.linalg.eigh(0.5 * (hessian + hessian.transpose(1, 2)))


def flat_noise_share(hessian: Tensor, covariance: Tensor, lr: float,
                     window: int) -> tuple[Tensor, Tensor]:
    """The noise in directions too flat to relax within ``window`` steps.

    In the eigenbasis ``(λ_i, v_i)`` of ``H_L`` (``hessian (P, D, D)``, e.g. ``∇²L_S`` of dropout),
    the directions with ``ε λ_i · window < 1`` (including ``λ_i ≤ 0``) do not relax within the
    window.

    Parameters
    ----------
    hessian, covariance : Tensor, (P, D, D)
        ``H_L`` and the noise covariance ``Σ``.
    lr : float
    window : int

    Returns
    -------
    share : Tensor, (P,)
        ``Σ_{flat} v_iᵀ Σ v_i / tr Σ``.
    count : Tensor, (P,)
        How many of the ``D`` directions are that flat.
    """
    lr, window = check_lr(lr), check_positive_int(window, "window")
    lam, V = _clamped_eigen(hessian)
    diag = torch.einsum("pdi,pde,pei->pi", V, covariance, V)
    flat = lr * lam * window < 1.0
    share = (diag * flat).sum(dim=1) / diag.sum(dim=1)
    return share, flat.sum(dim=1)


def linear_surrogate(center: Tensor, hessian: Tensor, covariance: Tensor, lr: float, burn: int,
                     window: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The linearized SME about ``center``, with a given Hessian and noise covariance.

    ``dX = −H⁺ (X − θ_c) dt + √ε Σ^{1/2} dW`` (the SME's order-1 drift ``−∇L`` linearized about
    ``θ_c``, noise covariance ``ε Σ``), with ``H⁺`` the Hessian with its negative eigenvalues set
    to 0 (those directions random-walk, as they do, slowly, in the real dynamics), integrated by
    Euler–Maruyama with the step ``h = ε`` of the algorithm (:func:`smetool.solve`): step ``k`` is
    ``x_{k+1} = (I − ε H⁺) x_k + ε Σ^{1/2} z_k``, the dynamics without drift or nonlinearity.
    ``burn`` steps are run first (as long as the real run's training), then ``window`` steps are
    recorded.

    Parameters
    ----------
    center : Tensor, (P, D)
    hessian : Tensor, (P, D, D)
        ``H`` of the loss the noise-free dynamics descend (``∇²L_S`` for dropout).
    covariance : Tensor, (P, D, D)
        ``Σ``, the noise covariance per unit learning rate (symmetric PSD).
    lr : float
    burn, window : int
    generator : torch.Generator

    Returns
    -------
    trajectory : Tensor, (window, P, D)
        ``θ_c + x_k``.
    clamped : Tensor, (P,)
        Negative eigenvalues of ``H`` set to 0, per path.
    """
    lr = check_lr(lr)
    burn, window = check_positive_int(burn, "burn"), check_positive_int(window, "window")
    lam, V = _clamped_eigen(hessian)
    H = V @ torch.diag_embed(lam.clamp_min(0.0)) @ V.transpose(1, 2)
    root = math.sqrt(lr) * psd_factor(0.5 * (covariance + covariance.transpose(1, 2)))
    # path p's coefficients are row p (the solver probes shapes on a prefix of the paths)
    sme = FunctionSDE(
        lambda t, x: -torch.einsum("pde,pe->pd", H[: len(x)], x - center[: len(x)]),
        lambda t, x: root[: len(x)], noise_kind=NoiseKind.ADDITIVE, noise_dim=root.shape[2])
    steps = burn + window
    sol = solve(sme, center, (0.0, steps * lr), dt=lr, generator=generator,
                save_at=[k * lr for k in range(burn + 1, steps + 1)])
    return sol.xs, (lam < 0).sum(dim=1)
