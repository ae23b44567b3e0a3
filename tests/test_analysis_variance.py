"""Random gradient data, covariances, PCA and power-law fits.

Statistical checks use a fixed seed and 5 standard errors per entry (false-failure probability
about 6e-7 per entry, < 1e-4 for each test).
"""

import itertools
import math

import pytest
import torch

from smetool.algorithms import DropoutAlgorithm, GradientDescent
from smetool.analysis.variance import (
    fit_power_law,
    principal_components,
    sample_covariance,
    trajectory_covariance,
    update_samples,
)
from smetool.models.dropout_problem import DropoutProblem


def sample_dropout_gradients(problem, theta, n, generator, lr=0.05):
    """Random gradient data of dropout: (θ − step)/lr, i.e. dropout gradients."""
    return update_samples(DropoutAlgorithm(problem, theta[0]), theta, lr, n, generator)


def gradient_noise_covariance(problem, theta, n, generator):
    return sample_covariance(sample_dropout_gradients(problem, theta, n, generator))


def _small_problem(p=0.7, m=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.linspace(-1, 1, 6, dtype=torch.float64).unsqueeze(1)
    y = torch.sin(3 * X[:, 0])
    problem = DropoutProblem(X, y, width=m, keep_prob=p)
    theta = torch.randn(2, problem.n_params, generator=g, dtype=torch.float64)
    return problem, theta


def _enumerated_covariance(problem, theta):
    """Exact Cov_η of the dropout gradient by enumerating all 2^m masks (ground truth)."""
    m, p = problem.width, problem.keep_prob
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m)), dtype=theta.dtype)
    w = (p ** masks.sum(1)) * ((1 - p) ** (m - masks.sum(1)))
    out = []
    for t in theta:
        _, G = problem.dropout_loss_grad(t.expand(masks.shape[0], -1), masks / p)
        mu = (w[:, None] * G).sum(0)
        C = G - mu
        out.append(torch.einsum("k,ki,kj->ij", w, C, C))
    return torch.stack(out)


def test_sampled_gradient_covariance_converges_to_exact_sigma():
    problem, theta = _small_problem()
    exact = _enumerated_covariance(problem, theta)
    # the closed form of the problem agrees with enumeration (sanity for the comparison below)
    assert torch.allclose(problem.noise_covariance(theta), exact, atol=1e-12)
    est = gradient_noise_covariance(problem, theta, 20_000, torch.Generator().manual_seed(1))
    assert est.covariance.shape == exact.shape and est.n_samples == 20_000
    z = (est.covariance - exact).abs() / (est.stderr + 1e-15)
    assert float(z.max()) < 5.0, f"max |error|/SE = {float(z.max()):.2f}"
    # the mean of the dropout gradient is ∇L_S, within 5 SE per coordinate
    se_mean = torch.diagonal(est.covariance, dim1=1, dim2=2).sqrt() / math.sqrt(est.n_samples)
    dev = (est.mean - problem.expected_loss_grad(theta)).abs() / (se_mean + 1e-15)
    assert float(dev.max()) < 5.0


def test_update_samples_shape_reproducibility_and_chunking():
    problem, theta = _small_problem()
    a = sample_dropout_gradients(problem, theta, 7, torch.Generator().manual_seed(3))
    b = sample_dropout_gradients(problem, theta, 7, torch.Generator().manual_seed(3))
    assert a.shape == (2, 7, problem.n_params) and torch.equal(a, b)
    # the dropout gradients themselves (masks drawn path-major, as one batch), up to the
    # rounding of (θ − (θ − lr g))/lr
    rows = theta.repeat_interleave(7, dim=0)
    scale = problem.sample_scale(14, torch.Generator().manual_seed(3), dtype=theta.dtype,
                                 device=theta.device)
    g = problem.dropout_loss_grad(rows, scale)[1].reshape(2, 7, -1)
    assert torch.allclose(a, g, rtol=0, atol=1e-12)
    # chunks of the repeated rows draw the same numbers in the same order
    c = update_samples(DropoutAlgorithm(problem, theta[0]), theta, 0.05, 7,
                       torch.Generator().manual_seed(3), chunk=3)
    assert torch.equal(a, c)
    # a deterministic step has no spread
    gd = update_samples(GradientDescent(problem, theta[0]), theta, 0.05, 3, torch.Generator())
    assert float((gd - gd[:, :1]).abs().max()) == 0.0
    with pytest.raises(ValueError, match="`n_samples` must be an integer ≥ 2; got 1"):
        sample_dropout_gradients(problem, theta, 1, torch.Generator())
    with pytest.raises(ValueError, match="`theta` must have shape \\(P, D\\)"):
        update_samples(DropoutAlgorithm(problem, theta[0]), theta[0], 0.1, 5, torch.Generator())


def test_sample_covariance_exact_on_small_sample_and_validation():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0], [2.0, 4.0]], dtype=torch.float64)
    est = sample_covariance(x)
    assert torch.allclose(est.covariance[0], torch.cov(x.T), atol=1e-14)
    assert "CovarianceEstimate" in repr(est) and est.to_dict()["n_samples"] == 3
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_covariance(x[:1])
    with pytest.raises(ValueError, match="`samples` must have shape"):
        sample_covariance(torch.zeros(2, 2, 2, 2))
    traj = torch.randn(10, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tc = trajectory_covariance(traj)
    assert torch.allclose(tc.covariance[1], torch.cov(traj[:, 1].T), atol=1e-14)
    assert torch.allclose(tc.mean, traj.mean(0))
    with pytest.raises(ValueError, match="`trajectory` must have shape"):
        trajectory_covariance(torch.zeros(3))


def _planted(D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)[:D]
    return Q, lam, (Q * lam) @ Q.T


def test_pca_recovers_planted_spectrum_exactly():
    Q, lam, S = _planted()
    pc = principal_components(S)
    assert torch.allclose(pc.variances[0], lam, atol=1e-12)
    overlap = (pc.directions[0] @ Q).abs().diagonal()
    assert torch.allclose(overlap, torch.ones(6, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(pc.explained.sum(-1), torch.ones(1, dtype=torch.float64))
    # sign convention: the largest-magnitude entry of each direction is positive
    d = pc.directions[0]
    assert bool((d.gather(1, d.abs().argmax(1, keepdim=True)) > 0).all())
    assert principal_components(S, 2).directions.shape == (1, 2, 6)
    with pytest.raises(ValueError, match="`n_components` must be an integer in \\[1, 6\\]; got 0"):
        principal_components(S, 0)
    with pytest.raises(ValueError, match="`covariance` must have shape"):
        principal_components(torch.zeros(2, 3))


def test_pca_of_sampled_covariance_recovers_planted_spectrum_within_se():
    Q, lam, S = _planted()
    N = 20_000
    z = torch.randn(N, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    samples = (z * lam.sqrt()) @ Q.T
    pc = principal_components(sample_covariance(samples).covariance)
    # Gaussian data, distinct eigenvalues: SE(λ̂_k) = λ_k sqrt(2/N) (Anderson 1963)
    assert bool(((pc.variances[0] - lam).abs() <= 5 * lam * math.sqrt(2 / N)).all())
    # eigenvector error: E‖û_k − q_k‖² ≈ Σ_{j≠k} λ_k λ_j / (N (λ_k − λ_j)²)
    for k in range(6):
        var = sum(lam[k] * lam[j] / (N * (lam[k] - lam[j]) ** 2) for j in range(6) if j != k)
        err = 1 - float((pc.directions[0, k] @ Q[:, k]).abs())  # ≈ ½‖û − q‖²
        assert err <= 0.5 * 25 * float(var)


def test_power_law_fit_exact_and_noisy():
    x = torch.logspace(-2, 2, 20, dtype=torch.float64)
    fit = fit_power_law(x, 3.0 * x**-1.5)
    assert fit.slope == pytest.approx(-1.5, abs=1e-12)
    assert math.exp(fit.intercept) == pytest.approx(3.0, rel=1e-12)
    assert fit.r_squared == pytest.approx(1.0) and fit.excludes_zero
    noise = torch.randn(20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    noisy = fit_power_law(x, 3.0 * x**-1.5 * torch.exp(0.3 * noise), confidence=0.999)
    assert noisy.ci_low < -1.5 < noisy.ci_high  # fails with probability 0.1 %
    assert "PowerLawFit" in repr(noisy) and noisy.to_dict()["n_points"] == 20
    # non-finite points are dropped, not fitted
    assert fit_power_law([1.0, 2.0, float("nan"), 4.0], [1.0, 2.0, 3.0, 4.0]).n_points == 3


def test_power_law_fit_validation():
    with pytest.raises(ValueError, match="`confidence` must be in \\(0, 1\\); got 1.0"):
        fit_power_law([1, 2, 3], [1, 2, 3], confidence=1.0)
    with pytest.raises(ValueError, match="must be positive for a log–log fit"):
        fit_power_law([1, 2, 3], [1, -2, 3])
    with pytest.raises(ValueError, match="at least 3 finite points; got 2"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="`x` must not be constant"):
        fit_power_law([2, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="the same length"):
        fit_power_law([1, 2, 3], [1, 2])
