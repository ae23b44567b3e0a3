"""Covariances of dropout noise and of trajectories, their PCA, and power-law fits.

Two kinds of sample data are used in the dropout variance–flatness analyses (Zhang, Li, Luo &
Xu, ICLR 2024):

* **random gradient data**: dropout gradients ``∇_θ R_S^drop(θ; η)`` at one fixed ``θ`` for many
  independent masks ``η`` (their covariance estimates the noise covariance ``Σ(θ)``);
* **random trajectory data**: the parameters ``θ_k`` visited by dropout training over a window of
  steps near a minimum (their covariance is the spread of the iterates).

Each is reduced to principal directions (PCA), along which variance and flatness are compared
(:mod:`smetool.analysis.variance_flatness`).

References
----------
Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, "Stochastic modified equations and dynamics of dropout
algorithm", ICLR 2024.
Y. Feng, Y. Tu, "The inverse variance–flatness relation in stochastic gradient descent is critical
for finding flat minima", PNAS 118(9), 2021.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..checks import check_positive_int

__all__ = [
    "CovarianceEstimate",
    "sample_covariance",
    "update_samples",
    "trajectory_covariance",
    "PrincipalComponents",
    "principal_components",
    "PowerLawFit",
    "fit_power_law",
]


@dataclass(frozen=True)
class CovarianceEstimate:
    """A sample covariance with the standard error of each entry.

    Attributes
    ----------
    mean : Tensor, (P, D)
    covariance : Tensor, (P, D, D)
        Unbiased sample covariance.
    stderr : Tensor, (P, D, D)
        Standard error of each covariance entry, ``sqrt(Var[(x_a − x̄_a)(x_b − x̄_b)] / N)``
        estimated from the same samples (delta method; exact to leading order in ``1/N``).
    n_samples : int
    """

    mean: Tensor
    covariance: Tensor
    stderr: Tensor
    n_samples: int

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "covariance": self.covariance.tolist(),
            "stderr": self.stderr.tolist(),
            "n_samples": self.n_samples,
        }

    def __repr__(self) -> str:
        P, D = self.mean.shape
        return f"CovarianceEstimate(paths={P}, D={D}, n_samples={self.n_samples})"


def sample_covariance(samples: Tensor) -> CovarianceEstimate:
    """Sample mean and covariance of ``samples (P, N, D)`` (N draws per batch entry).

    Parameters
    ----------
    samples : Tensor, (P, N, D) or (N, D)

    Returns
    -------
    CovarianceEstimate

    Raises
    ------
    ValueError
        If fewer than 2 samples are given or the shape is wrong.
    """
    if samples.ndim == 2:
        samples = samples.unsqueeze(0)
    if samples.ndim != 3:
        raise ValueError(
            f"`samples` must have shape (P, N, D) or (N, D); got {tuple(samples.shape)}."
        )
    N = samples.shape[1]
    if N < 2:
        raise ValueError(f"`samples` must hold at least 2 samples per batch entry; got {N}.")
    mean = samples.mean(dim=1)
    c = samples - mean.unsqueeze(1)
    cov = torch.einsum("pna,pnb->pab", c, c) / (N - 1)
    # Var of the centred products: E[c_a² c_b²] − (E[c_a c_b])², from the same samples.
    c2 = c * c
    second = torch.einsum("pna,pnb->pab", c2, c2) / N
    biased = cov * (N - 1) / N
    var_prod = (second - biased * biased).clamp_min(0.0) * N / (N - 1)
    return CovarianceEstimate(mean=mean, covariance=cov, stderr=(var_prod / N).sqrt(), n_samples=N)


def update_samples(algorithm, theta: Tensor, lr: float, n_samples: int,
                   generator: torch.Generator, *, chunk: int = 4096) -> Tensor:
    """Random gradient data of any algorithm: ``(θ − step(θ))/lr`` for ``n_samples`` independent
    draws of its randomness at each fixed ``θ``.

    For a stochastic-gradient rule ``θ − lr g(θ; ξ)`` this is ``g(θ; ξ)`` (dropout gradients,
    minibatch gradients, SAM's gradient at the ascent point); for SignSGD the signs. Their
    covariance is the algorithm's noise covariance per unit learning rate, ``Cov(step)/lr²``.

    Parameters
    ----------
    algorithm : Algorithm
        Its :meth:`~smetool.algorithms.Algorithm.step` is applied to ``θ`` repeated.
    theta : Tensor, (P, D)
    lr : float
        The learning rate of the step (it enters nonlinear rules such as SAM's only through the
        division).
    n_samples : int
        Draws per point (≥ 2).
    generator : torch.Generator
    chunk : int
        Rows per call of the step (memory).

    Returns
    -------
    Tensor, (P, n_samples, D)

    Raises
    ------
    ValueError
        If ``n_samples < 2`` or ``theta`` is not 2-D.

    References
    ----------
    Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024 ("random gradient data").
    """
    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 2:
        raise ValueError(f"`n_samples` must be an integer ≥ 2; got {n_samples!r}.")
    if theta.ndim != 2:
        raise ValueError(f"`theta` must have shape (P, D); got {tuple(theta.shape)}.")
    P, D = theta.shape
    rows = theta.repeat_interleave(int(n_samples), dim=0)  # (P·N, D), path-major
    out = torch.cat([(part - algorithm.step(part, lr, generator)) / lr
                     for part in rows.split(check_positive_int(chunk, "chunk"))])
    return out.reshape(P, int(n_samples), D)


def trajectory_covariance(trajectory: Tensor) -> CovarianceEstimate:
    """Random trajectory data: covariance of iterates over a window of steps, per path.

    Parameters
    ----------
    trajectory : Tensor, (T, P, D) or (T, D)
        Parameters at ``T ≥ 2`` recorded steps (time first, as produced by
        :attr:`smetool.algorithms.training.Trajectory.window`).

    Returns
    -------
    CovarianceEstimate
        Mean ``θ̄`` (the centre used for flatness) and covariance over the window. The standard
        errors treat the steps as independent, which successive iterates are not: read them as a
        lower bound.

    References
    ----------
    Y. Feng, Y. Tu, PNAS 2021; Z. Zhang, Y. Li, T. Luo, Z.-Q. J. Xu, ICLR 2024.
    """
    if trajectory.ndim == 2:
        trajectory = trajectory.unsqueeze(1)
    if trajectory.ndim != 3:
        raise ValueError(
            f"`trajectory` must have shape (T, P, D) or (T, D); got {tuple(trajectory.shape)}."
        )
    return sample_covariance(trajectory.transpose(0, 1))


@dataclass(frozen=True)
class PrincipalComponents:
    """Principal directions of a batch of covariances.

    Attributes
    ----------
    variances : Tensor, (P, K)
        Eigenvalues, decreasing (the variance along each direction).
    directions : Tensor, (P, K, D)
        Unit eigenvectors; row ``k`` belongs to ``variances[:, k]``. The sign of each direction is
        fixed so that its largest-magnitude entry is positive (reproducible output).
    explained : Tensor, (P, K)
        Fraction of the total variance along each direction.
    """

    variances: Tensor
    directions: Tensor
    explained: Tensor

    def to_dict(self) -> dict:
        return {
            "variances": self.variances.tolist(),
            "directions": self.directions.tolist(),
            "explained": self.explained.tolist(),
        }

    def __repr__(self) -> str:
        P, K = self.variances.shape
        return (
            f"PrincipalComponents(paths={P}, components={K}, "
            f"top explained={float(self.explained[:, 0].mean()):.3g})"
        )


def principal_components(
    covariance: Tensor, n_components: int | None = None
) -> PrincipalComponents:
    """PCA of symmetric PSD matrices: the leading eigenpairs.

    Parameters
    ----------
    covariance : Tensor, (P, D, D) or (D, D)
    n_components : int, optional
        ``K``; all ``D`` by default.

    Returns
    -------
    PrincipalComponents

    Raises
    ------
    ValueError
        If the matrices are not square or ``n_components`` is out of ``[1, D]``.
    """
    if covariance.ndim == 2:
        covariance = covariance.unsqueeze(0)
    if covariance.ndim != 3 or covariance.shape[1] != covariance.shape[2]:
        raise ValueError(
            f"`covariance` must have shape (P, D, D) or (D, D); got {tuple(covariance.shape)}."
        )
    D = covariance.shape[1]
    K = D if n_components is None else n_components
    if int(K) != K or not 1 <= K <= D:
        raise ValueError(f"`n_components` must be an integer in [1, {D}]; got {n_components!r}.")
    sym = 0.5 * (covariance + covariance.transpose(1, 2))
    evals, evecs = torch.linalg.eigh(sym)
    evals, evecs = evals.flip(-1)[:, : int(K)], evecs.flip(-1)[:, :, : int(K)]
    dirs = evecs.transpose(1, 2)  # (P, K, D)
    idx = dirs.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(torch.gather(dirs, -1, idx))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    total = torch.diagonal(sym, dim1=1, dim2=2).sum(dim=1, keepdim=True)
    return PrincipalComponents(
        variances=evals,
        directions=dirs * sign,
        explained=evals / total.clamp_min(torch.finfo(sym.dtype).tiny),
    )


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares fit of ``log y = intercept + slope · log x`` (``y ∝ x^slope``).

    Attributes
    ----------
    slope, intercept : float
    slope_stderr : float
        Ordinary least-squares standard error of the slope.
    ci_low, ci_high : float
        Student-t confidence interval for the slope at level ``confidence``.
    r_squared : float
    n_points : int
    confidence : float
    """

    slope: float
    intercept: float
    slope_stderr: float
    ci_low: float
    ci_high: float
    r_squared: float
    n_points: int
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the confidence interval of the slope excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict:
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "slope_stderr": self.slope_stderr,
            "ci": [self.ci_low, self.ci_high],
            "r_squared": self.r_squared,
            "n_points": self.n_points,
            "confidence": self.confidence,
        }

    def __repr__(self) -> str:
        pct = round(100 * self.confidence)
        return (
            f"PowerLawFit(slope={self.slope:.3f}, "
            f"{pct}% CI=[{self.ci_low:.3f}, {self.ci_high:.3f}], "
            f"R²={self.r_squared:.3f}, n={self.n_points})"
        )


def fit_power_law(x, y, *, confidence: float = 0.95) -> PowerLawFit:
    """Fit ``y ∝ x^slope`` by least squares on ``(log x, log y)``, with a t confidence interval.

    Parameters
    ----------
    x, y : array-like, (N,)
        Positive values; entries that are not finite in either are dropped first.
    confidence : float
        Level of the slope's interval, in ``(0, 1)``.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    ValueError
        If ``confidence`` is outside ``(0, 1)``, a value is ≤ 0, the shapes differ, fewer than 3
        finite points remain, or all ``x`` are equal.

    Examples
    --------
    >>> fit = fit_power_law([1.0, 2.0, 4.0, 8.0], [3.0, 12.0, 48.0, 192.0])
    >>> round(fit.slope, 12)
    2.0
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    x = np.asarray(torch.as_tensor(x).detach().cpu(), dtype=float).ravel()
    y = np.asarray(torch.as_tensor(y).detach().cpu(), dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have the same length; got {x.size} and {y.size}.")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("`x` and `y` must be positive for a log–log fit; got a value ≤ 0.")
    n = x.size
    if n < 3:
        raise ValueError(f"a power-law fit needs at least 3 finite points; got {n}.")
    lx, ly = np.log(x), np.log(y)
    sxx = float(((lx - lx.mean()) ** 2).sum())
    if sxx == 0.0:
        raise ValueError("`x` must not be constant for a power-law fit.")
    slope = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - intercept - slope * lx
    sse = float((resid**2).sum())
    sst = float(((ly - ly.mean()) ** 2).sum())
    se = math.sqrt(sse / (n - 2) / sxx)
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 2))
    return PowerLawFit(
        slope=slope,
        intercept=intercept,
        slope_stderr=se,
        ci_low=slope - t * se,
        ci_high=slope + t * se,
        r_squared=1.0 - sse / sst if sst > 0 else 1.0,
        n_points=int(n),
        confidence=float(confidence),
    )
