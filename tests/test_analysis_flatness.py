"""Hessian spectrum, Hessian flatness and interval flatness against closed forms."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool.analysis.flatness import (
    UnboundedIntervalError,
    hessian_flatness,
    hessian_spectrum,
    interval_flatness,
)


def _quadratic(A, b, c0):
    """L(θ) = c0 + bᵀθ + ½ θᵀAθ, batched."""

    def loss(t):
        return c0 + t @ b + 0.5 * torch.einsum("ni,ij,nj->n", t, A, t)

    return loss


def _closed_form(A, b, c0, theta, u, level):
    # L(θ + s u) = L0 + g s + ½ q s², g = uᵀ∇L(θ), q = uᵀAu: the crossings of level·L0 are the
    # roots of ½ q s² + g s − (level − 1) L0 = 0.
    L0 = float(_quadratic(A, b, c0)(theta.unsqueeze(0))[0])
    g = float(u @ (b + A @ theta))
    q = float(u @ A @ u)
    disc = math.sqrt(g * g + 2 * q * (level - 1) * L0)
    return (-g - disc) / q, (-g + disc) / q


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    level=st.floats(1.2, 5.0),
    D=st.integers(1, 5),
)
def test_interval_flatness_of_quadratic_equals_closed_form(seed, level, D):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(D, D, generator=g, dtype=torch.float64)
    A = M @ M.T + 0.1 * torch.eye(D, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    theta = torch.randn(2, D, generator=g, dtype=torch.float64)
    U = torch.randn(2, 3, D, generator=g, dtype=torch.float64)
    loss = _quadratic(A, b, 1.0 + float(b @ torch.linalg.solve(A, b)) / 2)  # min value 1 > 0
    res = interval_flatness(loss, theta, U, level=level, max_distance=1e3)
    for p in range(2):
        for k in range(3):
            u = U[p, k] / U[p, k].norm()
            c0 = 1.0 + float(b @ torch.linalg.solve(A, b)) / 2
            lo, hi = _closed_form(A, b, c0, theta[p], u, level)
            assert res.left[p, k].item() == pytest.approx(lo, rel=1e-9, abs=1e-9)
            assert res.right[p, k].item() == pytest.approx(hi, rel=1e-9, abs=1e-9)
            assert res.width[p, k].item() == pytest.approx(hi - lo, rel=1e-9)


def test_interval_flatness_doc_example_and_scaling():
    # L = 1 + ½‖θ‖² at 0: width 2·sqrt(2 (c − 1)), independent of the direction's length.
    loss = lambda t: 1.0 + 0.5 * (t**2).sum(dim=1)  # noqa: E731
    res = interval_flatness(loss, torch.zeros(2, dtype=torch.float64),
                            torch.tensor([[3.0, 0.0], [1.0, 1.0]], dtype=torch.float64), level=3.0)
    assert torch.allclose(res.width, torch.full((1, 2), 4.0, dtype=torch.float64), atol=1e-10)
    assert "IntervalFlatness" in repr(res) and set(res.to_dict()) >= {"width", "left", "right"}


def test_interval_flatness_takes_the_first_crossing():
    # L(s) = 1 + s² (s − 3)² along e1 has a second basin at s = 3; the interval around 0 at
    # level 2 ends at the first crossing s = 0.3968 (root of s²(s−3)² = 1 below 1.5).
    loss = lambda t: 1.0 + (t[:, 0] ** 2) * (t[:, 0] - 3.0) ** 2 + t[:, 1] ** 2  # noqa: E731
    res = interval_flatness(loss, torch.zeros(1, 2, dtype=torch.float64),
                            torch.tensor([1.0, 0.0], dtype=torch.float64))
    right = (3 - math.sqrt(9 - 4)) / 2  # s(3 − s) = 1
    left = (3 - math.sqrt(9 + 4)) / 2  # s(s − 3) = 1, negative root
    assert res.right.item() == pytest.approx(right, rel=1e-10)
    assert res.left.item() == pytest.approx(left, rel=1e-10)


def test_unbounded_interval_raises_or_gives_nan():
    # Bounded loss along e2: never reaches 2 · L0.
    loss = lambda t: 1.0 + t[:, 0] ** 2 + 0.5 * torch.tanh(t[:, 1]) ** 2  # noqa: E731
    theta = torch.zeros(1, 2, dtype=torch.float64)
    U = torch.eye(2, dtype=torch.float64)
    with pytest.raises(UnboundedIntervalError, match="direction 1 of path 0 stays below 2"):
        interval_flatness(loss, theta, U, max_distance=50.0)
    res = interval_flatness(loss, theta, U, max_distance=50.0, on_unbounded="nan")
    assert res.width[0, 0].item() == pytest.approx(2.0, rel=1e-10)
    assert math.isnan(res.width[0, 1].item())


def test_interval_flatness_validation():
    loss = lambda t: 1.0 + (t**2).sum(dim=1)  # noqa: E731
    th = torch.zeros(1, 2, dtype=torch.float64)
    U = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="`level` must be a finite number > 1; got 1.0"):
        interval_flatness(loss, th, U, level=1.0)
    with pytest.raises(ValueError, match="`max_distance` must be a finite number > 0"):
        interval_flatness(loss, th, U, max_distance=-1.0)
    with pytest.raises(ValueError, match="`min_distance` must be in"):
        interval_flatness(loss, th, U, min_distance=200.0)
    with pytest.raises(ValueError, match="`grid_points` must be an integer ≥ 8"):
        interval_flatness(loss, th, U, grid_points=3)
    with pytest.raises(ValueError, match="`on_unbounded` must be 'raise' or 'nan'"):
        interval_flatness(loss, th, U, on_unbounded="skip")
    with pytest.raises(ValueError, match="needs a finite loss > 0 at the centre; path 0"):
        interval_flatness(lambda t: (t**2).sum(dim=1), th, U)
    with pytest.raises(ValueError, match="already exceeds 2 · L\\(θ\\)"):
        interval_flatness(lambda t: 1e-30 + (t**2).sum(dim=1) * 1e30, th, U)
    with pytest.raises(ValueError, match="`directions` must be non-zero vectors"):
        interval_flatness(loss, th, torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="`directions` must have shape"):
        interval_flatness(loss, th, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`loss_fn` must map"):
        interval_flatness(lambda t: t, th, U)


def test_hessian_flatness_and_spectrum():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    H = M + M.transpose(1, 2)
    evals, evecs = torch.linalg.eigh(H)
    # along an eigenvector uᵀHu is its eigenvalue; directions are normalised first
    hf = hessian_flatness(H, 5.0 * evecs.transpose(1, 2))
    assert torch.allclose(hf, evals, atol=1e-12)
    spec = hessian_spectrum(H, k=3)
    assert torch.allclose(spec.top_eigenvalues, evals.flip(-1)[:, :3], atol=1e-12)
    assert torch.allclose(spec.trace, evals.sum(-1), atol=1e-12)
    assert "HessianSpectrum" in repr(spec) and len(spec.to_dict()["trace"]) == 3
    # shared directions (K, D) broadcast over paths
    assert hessian_flatness(H, torch.eye(6, dtype=torch.float64)).shape == (3, 6)
    with pytest.raises(ValueError, match="`k` must be an integer in \\[1, 6\\]; got 7"):
        hessian_spectrum(H, k=7)
    with pytest.raises(ValueError, match="`H` must have shape \\(P, D, D\\)"):
        hessian_spectrum(H[0])
