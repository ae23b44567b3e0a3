"""Hessian–covariance alignment and its Haar baseline."""

import math

import pytest
import torch

from smetool.analysis.alignment import alignment, alignment_with_baseline, haar_orthogonal


def _spd(P, D, seed):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(P, D, D, generator=g, dtype=torch.float64)
    return M @ M.transpose(1, 2) / D + 0.05 * torch.eye(D, dtype=torch.float64)


def test_alignment_exact_values():
    H = _spd(3, 5, 0)
    assert torch.allclose(alignment(H, H), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(alignment(H, 4.0 * H), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(alignment(H, -H), -torch.ones(3, dtype=torch.float64))
    # orthogonal in the Frobenius inner product
    E1 = torch.diag_embed(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)[:1])
    E2 = torch.diag_embed(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert alignment(E1, E2).item() == 0.0
    assert math.isnan(alignment(E1, torch.zeros_like(E1)).item())


def test_haar_orthogonal_is_orthogonal_with_haar_moments():
    g = torch.Generator().manual_seed(0)
    Q = haar_orthogonal((4000,), 4, g)
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(Q @ Q.transpose(1, 2), eye.expand(4000, 4, 4), atol=1e-12)
    # E Q_ij² = 1/D; Var Q_ij² = 2/(D(D+2)) − 1/D² ⇒ SE of the mean of 4000 draws
    q2 = (Q**2).mean(0)
    se = math.sqrt((2 / (4 * 6) - 1 / 16) / 4000)
    assert float((q2 - 0.25).abs().max()) < 5 * se
    # Haar measure gives det = ±1 with equal probability (no sign bias from QR)
    det = torch.linalg.det(Q)
    assert abs(float((det > 0).double().mean()) - 0.5) < 5 * 0.5 / math.sqrt(4000)
    with pytest.raises(ValueError, match="`D` must be a positive integer; got 0"):
        haar_orthogonal((2,), 0, g)


def test_baseline_mean_matches_its_exact_expectation_within_se():
    H, S = _spd(2, 6, 1), _spd(2, 6, 2)
    n = 2000
    res = alignment_with_baseline(H, S, torch.Generator().manual_seed(3), n_baseline=n)
    se = res.baseline_sd / math.sqrt(n)
    assert bool(((res.baseline_mean - res.baseline_expected).abs() < 5 * se).all())
    assert torch.allclose(res.alpha, alignment(H, S))
    assert res.to_dict()["n_baseline"] == n and "AlignmentResult" in repr(res)
    # a covariance equal to H is far above the baseline
    same = alignment_with_baseline(H, H, torch.Generator().manual_seed(4), n_baseline=200)
    assert bool((same.z_score > 3).all())


def test_alignment_validation():
    H = _spd(2, 3, 0)
    with pytest.raises(ValueError, match="`sigma` must have the shape of `H`"):
        alignment(H, H[:1])
    with pytest.raises(ValueError, match="`H` must have shape \\(P, D, D\\)"):
        alignment(H[0], H[0])
    with pytest.raises(ValueError, match="`n_baseline` must be an integer ≥ 2; got 1"):
        alignment_with_baseline(H, H, torch.Generator(), n_baseline=1)
