"""Variance–flatness relations along the principal directions of a covariance.

For each path, the covariance (of random gradient data or of random trajectory data, see
:mod:`smetool.analysis.variance`) is reduced to its ``K`` leading principal directions ``u_k`` with
variances ``λ_k``. Along each ``u_k`` the landscape is measured at a centre ``θ_c`` by

* the interval flatness ``F_k`` (width of ``{s : L(θ_c + s u_k) ≤ c L(θ_c)}``), and
* the Hessian flatness ``F^H_k = u_kᵀ ∇²L(θ_c) u_k``,

and power laws ``λ ∝ F^ψ`` and ``λ ∝ (F^H)^χ`` are fitted on log–log axes. The **inverse
variance–flatness relation** is ``ψ < 0`` (more variance along sharper directions) and the
**Hessian–variance relation** is ``χ > 0``.

References
----------
Y. Feng, Y. Tu, "The inverse variance–flatness relation in stochastic gradient descent is critical
for finding flat minima", PNAS 118(9), 2021.
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
Z. Zhang, H. Zhou, Z.-Q. J. Xu, "A variance principle explains why dropout finds flatter minima",
arXiv:2111.01022, 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .flatness import hessian_flatness, interval_flatness, normalize_directions
from .variance import PowerLawFit, PrincipalComponents, fit_power_law, principal_components

__all__ = ["VarianceFlatness", "variance_flatness", "sample_principal_components",
           "variance_flatness_from_samples"]


@dataclass(frozen=True)
class VarianceFlatness:
    """Per-direction variance and flatness, with per-path and pooled power-law fits.

    Attributes
    ----------
    components : PrincipalComponents
        ``variances (P, K)`` and ``directions (P, K, D)``.
    interval : Tensor, (P, K)
        Interval flatness (NaN where unbounded within the search distance, and everywhere when
        the loss at a centre is not positive: the level ``c L`` is then not above it).
    hessian : Tensor, (P, K)
        Hessian flatness ``uᵀ H u`` (may be ≤ 0 away from a minimum; such points are left out of
        the log–log fit and counted in ``hessian_nonpositive``).
    center_loss : Tensor, (P,)
    fits_interval, fits_hessian : tuple of PowerLawFit or None
        One fit per path (``None`` where fewer than 3 usable points remain).
    pooled_interval, pooled_hessian : PowerLawFit or None
        One fit over the points of all paths.
    hessian_nonpositive : int
        Directions with ``uᵀ H u ≤ 0`` (left out of the Hessian fits).
    interval_unbounded : int
        Directions whose interval was unbounded (left out of the interval fits).
    level : float
    """

    components: PrincipalComponents
    interval: Tensor
    hessian: Tensor
    center_loss: Tensor
    fits_interval: tuple
    fits_hessian: tuple
    pooled_interval: PowerLawFit | None
    pooled_hessian: PowerLawFit | None
    hessian_nonpositive: int
    interval_unbounded: int
    level: float

    def slopes(self, which: str) -> Tensor:
        """Per-path slopes of ``"interval"`` or ``"hessian"`` fits (NaN where no fit)."""
        fits = self.fits_interval if which == "interval" else self.fits_hessian
        return torch.tensor([f.slope if f is not None else float("nan") for f in fits])

    def to_dict(self) -> dict:
        def fd(f):
            return None if f is None else f.to_dict()

        return {
            "variances": self.components.variances.tolist(),
            "interval_flatness": self.interval.tolist(),
            "hessian_flatness": self.hessian.tolist(),
            "center_loss": self.center_loss.tolist(),
            "fits_interval": [fd(f) for f in self.fits_interval],
            "fits_hessian": [fd(f) for f in self.fits_hessian],
            "pooled_interval": fd(self.pooled_interval),
            "pooled_hessian": fd(self.pooled_hessian),
            "hessian_nonpositive": self.hessian_nonpositive,
            "interval_unbounded": self.interval_unbounded,
            "level": self.level,
        }

    def __repr__(self) -> str:
        def s(f):
            return "n/a" if f is None else f"{f.slope:.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}]"

        P, K = self.interval.shape
        return (
            f"VarianceFlatness(paths={P}, directions={K}, "
            f"pooled slope vs interval {s(self.pooled_interval)}, "
            f"vs Hessian {s(self.pooled_hessian)})"
        )


def _fit(x: Tensor, y: Tensor, confidence: float) -> PowerLawFit | None:
    ok = torch.isfinite(x) & (x > 0) & torch.isfinite(y) & (y > 0)
    if int(ok.sum()) < 3 or bool((x[ok] == x[ok][0]).all()):
        return None
    return fit_power_law(x[ok], y[ok], confidence=confidence)


def variance_flatness(
    covariance: Tensor,
    center: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    hessian: Tensor,
    *,
    n_components: int = 10,
    level: float = 2.0,
    max_distance: float = 100.0,
    confidence: float = 0.95,
) -> VarianceFlatness:
    """Variance, interval flatness and Hessian flatness along the leading principal directions.

    Parameters
    ----------
    covariance : Tensor, (P, D, D)
        Noise covariance (random gradient data, or the exact ``Σ``) or trajectory covariance.
    center : Tensor, (P, D)
        Where the landscape is measured (the fixed point for gradient data, the window mean for
        trajectory data).
    loss_fn : callable
        Batched loss ``(N, D) -> (N,)`` whose landscape is measured (e.g. ``problem.loss``).
    hessian : Tensor, (P, D, D)
        Hessian of that loss at ``center``.
    n_components : int
        ``K``, leading directions analysed.
    level : float
        ``c`` of the interval flatness (default 2).
    max_distance : float
        Search distance for the interval flatness; unbounded directions are left out (NaN).
    confidence : float
        Level of the slopes' confidence intervals.

    Returns
    -------
    VarianceFlatness

    Raises
    ------
    ValueError
        On inconsistent shapes or invalid options (see :func:`interval_flatness`).

    References
    ----------
    Y. Feng, Y. Tu, PNAS 2021; Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024.
    """
    if center.ndim != 2 or covariance.shape != (center.shape[0], center.shape[1], center.shape[1]):
        raise ValueError(
            f"`covariance` must have shape (P, D, D) matching `center` (P, D) = "
            f"{tuple(center.shape)}; got {tuple(covariance.shape)}."
        )
    if hessian.shape != covariance.shape:
        raise ValueError(
            f"`hessian` must have shape {tuple(covariance.shape)}; got {tuple(hessian.shape)}."
        )
    pc = principal_components(covariance, n_components)
    hf = hessian_flatness(hessian, pc.directions)
    return _assemble(pc, hf, loss_fn, center, level, max_distance, confidence)


def _assemble(pc: PrincipalComponents, hf: Tensor, loss_fn, center: Tensor, level: float,
              max_distance: float, confidence: float) -> VarianceFlatness:
    P = center.shape[0]
    with torch.no_grad():
        positive = bool((loss_fn(center) > 0).all())
    if positive:
        itv = interval_flatness(loss_fn, center, pc.directions, level=level,
                                max_distance=max_distance, on_unbounded="nan")
        width, center_loss = itv.width, itv.center_loss
    else:  # the level c·L is not above the centre: interval flatness is undefined (NaN)
        width = torch.full_like(hf, float("nan"))
        with torch.no_grad():
            center_loss = loss_fn(center)
    fits_i = tuple(_fit(width[p], pc.variances[p], confidence) for p in range(P))
    fits_h = tuple(_fit(hf[p], pc.variances[p], confidence) for p in range(P))
    return VarianceFlatness(
        components=pc,
        interval=width,
        hessian=hf,
        center_loss=center_loss,
        fits_interval=fits_i,
        fits_hessian=fits_h,
        pooled_interval=_fit(width.flatten(), pc.variances.flatten(), confidence),
        pooled_hessian=_fit(hf.flatten(), pc.variances.flatten(), confidence),
        hessian_nonpositive=int((hf <= 0).sum()),
        interval_unbounded=int(torch.isnan(width).sum()),
        level=float(level),
    )


def sample_principal_components(samples: Tensor, n_components: int) -> tuple[Tensor, PrincipalComponents]:
    """PCA of samples ``(P, N, D)`` by a thin SVD of the centred data, without the ``D × D``
    covariance (``O(P N² D)`` for ``N ≤ D``): the sample mean ``(P, D)`` and the leading
    ``n_components`` directions of the unbiased sample covariance, signed as
    :func:`~smetool.analysis.variance.principal_components` signs them.

    Raises
    ------
    ValueError
        Fewer than 2 samples, or ``n_components`` outside ``[1, min(N − 1, D)]``.
    """
    if samples.ndim != 3 or samples.shape[1] < 2:
        raise ValueError(f"`samples` must have shape (P, N, D) with N ≥ 2; got {tuple(samples.shape)}.")
    P, N, D = samples.shape
    K = n_components
    if int(K) != K or not 1 <= K <= min(N - 1, D):
        raise ValueError(f"`n_components` must be an integer in [1, {min(N - 1, D)}]; got {K!r}.")
    mean = samples.mean(dim=1)
    _, s, Vh = torch.linalg.svd(samples - mean.unsqueeze(1), full_matrices=False)
    variances = s * s / (N - 1)  # (P, min(N, D)), decreasing
    dirs = Vh[:, : int(K)]
    idx = dirs.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(torch.gather(dirs, -1, idx))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    total = variances.sum(dim=1, keepdim=True).clamp_min(torch.finfo(samples.dtype).tiny)
    pc = PrincipalComponents(variances=variances[:, : int(K)], directions=dirs * sign,
                             explained=variances[:, : int(K)] / total)
    return mean, pc


def variance_flatness_from_samples(
    samples: Tensor,
    center: Tensor | None,
    loss_fn: Callable[[Tensor], Tensor],
    hvp: Callable[[Tensor, Tensor], Tensor],
    *,
    n_components: int = 10,
    level: float = 2.0,
    max_distance: float = 100.0,
    confidence: float = 0.95,
) -> VarianceFlatness:
    """:func:`variance_flatness` for large ``D``: PCA of the samples by SVD and Hessian flatness
    by Hessian–vector products, never a ``D × D`` matrix.

    Parameters
    ----------
    samples : Tensor, (P, N, D)
        Random gradient data or random trajectory data, ``N`` samples per path.
    center : Tensor, (P, D), optional
        Where the landscape is measured; default the sample mean (trajectory data).
    loss_fn : callable
        Batched loss ``(M, D) -> (M,)``.
    hvp : callable
        ``hvp(center (P, D), V (P, K, D)) -> ∇²L(center) V``.
    n_components, level, max_distance, confidence
        As in :func:`variance_flatness`.

    Returns
    -------
    VarianceFlatness

    References
    ----------
    Y. Feng, Y. Tu, PNAS 2021; Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024.
    """
    mean, pc = sample_principal_components(samples, n_components)
    center = mean if center is None else center
    if center.shape != mean.shape:
        raise ValueError(f"`center` must have shape {tuple(mean.shape)}; got {tuple(center.shape)}.")
    U = normalize_directions(pc.directions, *center.shape)
    hf = (U * hvp(center, U)).sum(dim=-1)
    return _assemble(pc, hf, loss_fn, center, level, max_distance, confidence)
