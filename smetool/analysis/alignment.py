"""Alignment of the Hessian with a noise (or trajectory) covariance, with a random baseline.

``α(H, Σ) = tr(H Σ) / (‖H‖_F ‖Σ‖_F)`` is the cosine of the angle between ``H`` and ``Σ`` as
vectors of ``R^{D×D}``: 1 when ``Σ ∝ H``; for PSD matrices it is ≥ 0, so its value alone is hard
to judge. The baseline keeps the spectrum of ``Σ`` and randomises its eigenbasis,
``Σ' = Q diag(λ(Σ)) Qᵀ`` with ``Q`` Haar-distributed on ``O(D)``; then

``E α(H, Σ') = tr(H) tr(Σ) / (D ‖H‖_F ‖Σ‖_F)``

(because ``E Q Λ Qᵀ = (tr Λ / D) I``), and the baseline's spread is estimated by sampling.

References
----------
Z. Zhang, H. Zhou, Z.-Q. J. Xu, "A variance principle explains why dropout finds flatter minima",
arXiv:2111.01022, 2021 (Hessian–covariance alignment under dropout).
Z. Zhu, J. Wu, B. Yu, L. Wu, J. Ma, "The anisotropic noise in stochastic gradient descent: its
behavior of escaping from sharp minima and regularization effects", ICML 2019 (``tr(HΣ)``).
F. Mezzadri, "How to generate random matrices from the classical compact groups", Notices AMS
54(5), 2007 (Haar sampling by QR with a sign correction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["alignment", "haar_orthogonal", "AlignmentResult", "alignment_with_baseline",
           "haar_baseline_moments", "alignment_from_samples", "rotated_alignment"]


def _check_pair(H: Tensor, S: Tensor) -> None:
    if H.ndim != 3 or H.shape[1] != H.shape[2]:
        raise ValueError(f"`H` must have shape (P, D, D); got {tuple(H.shape)}.")
    if S.shape != H.shape:
        raise ValueError(
            f"`sigma` must have the shape of `H`, {tuple(H.shape)}; got {tuple(S.shape)}."
        )


def alignment(H: Tensor, sigma: Tensor) -> Tensor:
    """``α(H, Σ) = tr(H Σ) / (‖H‖_F ‖Σ‖_F)`` for batches of symmetric matrices.

    Parameters
    ----------
    H, sigma : Tensor, (P, D, D)

    Returns
    -------
    Tensor, (P,)
        In ``[−1, 1]``; NaN where either matrix is zero.

    Raises
    ------
    ValueError
        If the shapes differ or are not ``(P, D, D)``.
    """
    _check_pair(H, sigma)
    num = (H * sigma.transpose(1, 2)).sum(dim=(1, 2))
    den = torch.linalg.matrix_norm(H) * torch.linalg.matrix_norm(sigma)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.nan)


def haar_orthogonal(
    shape: tuple[int, ...], D: int, generator: torch.Generator, *,
    dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
) -> Tensor:
    """Haar-distributed orthogonal matrices, shape ``(*shape, D, D)``.

    QR of a Gaussian matrix, with the columns' signs fixed by the signs of ``diag(R)`` so that the
    distribution is exactly Haar (Mezzadri 2007).

    Parameters
    ----------
    shape : tuple of int
        Batch shape.
    D : int
    generator : torch.Generator
    dtype, device
        Of the output.

    Returns
    -------
    Tensor, (*shape, D, D)
    """
    if int(D) != D or D < 1:
        raise ValueError(f"`D` must be a positive integer; got {D!r}.")
    Z = torch.randn(*shape, D, D, generator=generator, dtype=dtype, device=generator.device)
    Q, R = torch.linalg.qr(Z)
    d = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    d = torch.where(d == 0, torch.ones_like(d), d)
    return (Q * d.unsqueeze(-2)).to(device=device if device is not None else Z.device)


@dataclass(frozen=True)
class AlignmentResult:
    """``α(H, Σ)`` with its same-spectrum, random-eigenbasis baseline.

    Attributes
    ----------
    alpha : Tensor, (P,)
    baseline_mean, baseline_sd : Tensor, (P,)
        Sample mean and standard deviation of ``α(H, Q Λ Qᵀ)`` over Haar ``Q``.
    baseline_expected : Tensor, (P,)
        Its exact mean ``tr(H) tr(Σ) / (D ‖H‖_F ‖Σ‖_F)``.
    n_baseline : int
        Haar samples per path.
    """

    alpha: Tensor
    baseline_mean: Tensor
    baseline_sd: Tensor
    baseline_expected: Tensor
    n_baseline: int

    @property
    def z_score(self) -> Tensor:
        """``(α − baseline_mean) / baseline_sd``, per path."""
        return (self.alpha - self.baseline_mean) / self.baseline_sd

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha.tolist(),
            "baseline_mean": self.baseline_mean.tolist(),
            "baseline_sd": self.baseline_sd.tolist(),
            "baseline_expected": self.baseline_expected.tolist(),
            "n_baseline": self.n_baseline,
        }

    def __repr__(self) -> str:
        return (
            f"AlignmentResult(α mean={float(self.alpha.mean()):.3f}, baseline "
            f"{float(self.baseline_mean.mean()):.3f} ± {float(self.baseline_sd.mean()):.3f}, "
            f"paths={self.alpha.shape[0]})"
        )


def alignment_with_baseline(
    H: Tensor, sigma: Tensor, generator: torch.Generator, *, n_baseline: int = 64
) -> AlignmentResult:
    """``α(H, Σ)`` and the distribution of ``α(H, Σ')`` for ``Σ' = Q diag(λ(Σ)) Qᵀ``, Haar ``Q``.

    Parameters
    ----------
    H, sigma : Tensor, (P, D, D)
        Symmetric matrices (``sigma`` a covariance).
    generator : torch.Generator
        For the Haar samples.
    n_baseline : int
        Haar samples per path (≥ 2).

    Returns
    -------
    AlignmentResult

    Raises
    ------
    ValueError
        On mismatched shapes or ``n_baseline < 2``.

    References
    ----------
    Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022, 2021.
    """
    _check_pair(H, sigma)
    if int(n_baseline) != n_baseline or n_baseline < 2:
        raise ValueError(f"`n_baseline` must be an integer ≥ 2; got {n_baseline!r}.")
    P, D, _ = H.shape
    alpha = alignment(H, sigma)
    lam = torch.linalg.eigvalsh(0.5 * (sigma + sigma.transpose(1, 2)))  # (P, D)
    Q = haar_orthogonal((P, int(n_baseline)), D, generator, dtype=H.dtype).to(H.device)
    # tr(H Q Λ Qᵀ) = Σ_k λ_k q_kᵀ H q_k, without forming Σ'.
    quad = torch.einsum("psik,pij,psjk->psk", Q, H, Q)
    num = (quad * lam.unsqueeze(1)).sum(dim=-1)
    hn = torch.linalg.matrix_norm(H)
    sn = lam.norm(dim=-1)  # ‖Σ'‖_F = ‖λ‖ = ‖Σ‖_F
    base = num / (hn * sn).unsqueeze(1)
    expected = torch.diagonal(H, dim1=1, dim2=2).sum(-1) * lam.sum(-1) / (D * hn * sn)
    return AlignmentResult(
        alpha=alpha,
        baseline_mean=base.mean(dim=1),
        baseline_sd=base.std(dim=1),
        baseline_expected=expected,
        n_baseline=int(n_baseline),
    )


def haar_baseline_moments(trace_h: Tensor, frob_h: Tensor, trace_s: Tensor, frob_s: Tensor,
                          D: int) -> tuple[Tensor, Tensor]:
    """Exact mean and standard deviation of ``α(H, Q Σ Qᵀ)`` over Haar ``Q ∈ O(D)``.

    With ``Ã = A − (tr A / D) I`` (``‖Ã‖²_F = ‖A‖²_F − (tr A)²/D``), for symmetric ``H`` and ``Σ``

    ``E tr(H QΣQᵀ) = tr H tr Σ / D``,  ``Var tr(H QΣQᵀ) = 2 ‖H̃‖²_F ‖Σ̃‖²_F / ((D − 1)(D + 2))``,

    the second moment of the orthogonal group's Weingarten calculus (checked against Haar
    sampling in the tests). Dividing by ``‖H‖_F ‖Σ‖_F`` (invariant under ``Q``) gives ``α``'s.

    Parameters
    ----------
    trace_h, frob_h, trace_s, frob_s : Tensor, (P,)
        ``tr H``, ``‖H‖_F``, ``tr Σ``, ``‖Σ‖_F``.
    D : int
        Dimension (≥ 2).

    Returns
    -------
    mean, sd : Tensor, (P,)

    References
    ----------
    B. Collins, P. Śniady, "Integration with respect to the Haar measure on unitary, orthogonal
    and symplectic group", Comm. Math. Phys. 264 (2006).
    """
    if int(D) != D or D < 2:
        raise ValueError(f"`D` must be an integer ≥ 2; got {D!r}.")
    norm = frob_h * frob_s
    mean = trace_h * trace_s / D / norm
    cen_h = (frob_h**2 - trace_h**2 / D).clamp_min(0.0)
    cen_s = (frob_s**2 - trace_s**2 / D).clamp_min(0.0)
    sd = torch.sqrt(2.0 * cen_h * cen_s / ((D - 1) * (D + 2))) / norm
    return mean, sd


def alignment_from_samples(samples: Tensor, hvp, trace_h: Tensor, frob_h: Tensor) -> AlignmentResult:
    """``α(H, Σ̂)`` for the sample covariance ``Σ̂`` of ``samples (P, N, D)``, by products only.

    ``Σ̂ = G̃ᵀ G̃ / (N − 1)`` (``G̃`` the centred samples) has rank ``< N``, so
    ``tr(H Σ̂) = Σ_k g̃_kᵀ H g̃_k / (N − 1)`` (``N`` Hessian–vector products) and
    ``‖Σ̂‖_F = ‖G̃ G̃ᵀ‖_F / (N − 1)``; ``tr H`` and ``‖H‖_F`` are given (exact, or estimated for a
    large network). The baseline (same spectrum, random eigenbasis) is exact
    (:func:`haar_baseline_moments`).

    Parameters
    ----------
    samples : Tensor, (P, N, D)
    hvp : callable
        ``V (P, s, D) -> H V``.
    trace_h, frob_h : Tensor, (P,)

    Returns
    -------
    AlignmentResult
        ``n_baseline = 0``: ``baseline_mean = baseline_expected`` and ``baseline_sd`` are exact.

    References
    ----------
    Z. Zhang, H. Zhou, Z.-Q. J. Xu, arXiv:2111.01022, 2021.
    """
    G, gram = _centred(samples)
    N, D = samples.shape[1:]
    frob_s = torch.linalg.matrix_norm(gram)
    trace_s = torch.diagonal(gram, dim1=1, dim2=2).sum(-1)
    mean, sd = haar_baseline_moments(trace_h, frob_h, trace_s, frob_s, D)
    alpha = (G * hvp(G)).sum(dim=(1, 2)) / (N - 1) / (frob_h * frob_s)
    return AlignmentResult(alpha=alpha, baseline_mean=mean, baseline_sd=sd,
                           baseline_expected=mean, n_baseline=0)


def _centred(samples: Tensor) -> tuple[Tensor, Tensor]:
    if samples.ndim != 3 or samples.shape[1] < 2:
        raise ValueError(f"`samples` must have shape (P, N, D) with N ≥ 2; got {tuple(samples.shape)}.")
    G = samples - samples.mean(dim=1, keepdim=True)
    return G, G @ G.transpose(1, 2) / (samples.shape[1] - 1)


def rotated_alignment(samples: Tensor, hvp, frob_h: Tensor, generator: torch.Generator) -> Tensor:
    """``α(H, Q Σ̂ Qᵀ)`` for one Haar ``Q`` per path: the alignment finding's negative control.

    ``Q Σ̂ Qᵀ`` keeps ``Σ̂``'s spectrum ``s_i² / (N − 1)`` (``s_i`` the singular values of the
    centred samples) on a uniformly random orthonormal frame ``W`` (QR of a Gaussian
    ``D × rank`` matrix, Mezzadri 2007), so ``tr(H QΣ̂Qᵀ) = Σ_i s_i² w_iᵀ H w_i / (N − 1)``:
    ``rank ≤ N`` Hessian–vector products.

    Returns
    -------
    Tensor, (P,)
    """
    G, gram = _centred(samples)
    P, N, D = samples.shape
    frob_s = torch.linalg.matrix_norm(gram)
    s = torch.linalg.svdvals(G)  # (P, min(N, D))
    Z = torch.randn(P, D, s.shape[1], generator=generator, dtype=G.dtype, device=generator.device)
    W = torch.linalg.qr(Z.to(G.device)).Q.transpose(1, 2)  # (P, r, D)
    quad = (W * hvp(W)).sum(dim=-1)
    return (quad * s * s).sum(dim=1) / (N - 1) / (frob_h * frob_s)
