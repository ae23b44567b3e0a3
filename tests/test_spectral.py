"""Spectra from Hessian–vector products: Lanczos and Hutch++ against dense eigendecompositions and
exact traces, on explicit matrices and on networks' Hessians (exact references first)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smetool.analysis import initial_points
from smetool.models import NetDropoutModel
from smetool.models.networks import builtin_network
from smetool.models.spectral import dense_hessian, dense_matvec, hutchpp_trace, lanczos_top


def _symmetric(P, D, eigenvalues, seed):
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(P, D, D, generator=g, dtype=torch.float64)).Q
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).expand(P, -1)
    return Q @ torch.diag_embed(lam) @ Q.transpose(1, 2)


def test_lanczos_top_matches_eigvalsh_with_negative_and_clustered_eigenvalues():
    lam = [40.0, 12.0, 11.9, 3.0] + [0.01 * i - 0.5 for i in range(76)]
    H = _symmetric(3, 80, lam, 0)
    res = lanczos_top(dense_matvec(H), 3, 80, 4, generator=torch.Generator().manual_seed(1),
                      tol=1e-10)
    exact = torch.linalg.eigvalsh(H).flip(-1)[:, :4]
    assert torch.allclose(res.eigenvalues, exact, rtol=0, atol=1e-8)
    assert res.iterations < 80  # converged before the full dimension
    # Ritz vectors are eigenvectors: ‖H x − θ x‖ equals the reported residual bound
    Hx = torch.einsum("pde,pke->pkd", H, res.eigenvectors)
    resid = (Hx - res.eigenvalues.unsqueeze(-1) * res.eigenvectors).norm(dim=-1)
    assert torch.allclose(resid, res.residuals, atol=1e-7)


def test_lanczos_handles_invariant_subspaces_of_low_rank_operators():
    H = torch.zeros(2, 10, 10, dtype=torch.float64)
    H[0, 0, 0], H[1, 3, 3], H[1, 4, 4] = 5.0, 2.0, -1.0
    res = lanczos_top(dense_matvec(H), 2, 10, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(res.eigenvalues, torch.tensor([[5.0, 0, 0], [2.0, 0, 0]],
                                                        dtype=torch.float64), atol=1e-12)


def test_lanczos_on_network_hessian_vector_products_matches_the_dense_hessian():
    landscape, _ = builtin_network("mlp", "toy", width=12)
    theta = initial_points(landscape, 2) + 0.1
    H = landscape.hessian_matrix(theta)
    res = lanczos_top(lambda V: landscape.hvp(theta, V), 2, landscape.n_params, 3,
                      generator=torch.Generator().manual_seed(2), tol=1e-9)
    exact = torch.linalg.eigvalsh(H).flip(-1)[:, :3]
    assert torch.allclose(res.eigenvalues, exact, rtol=1e-7, atol=1e-9)


def test_dense_hessian_is_exact_for_a_linear_model_with_squared_loss():
    # R_S = 1/(2n) Σ ‖W x_i + b − y_i‖²: ∇²R_S = (1/n) Σ x̃ x̃ᵀ ⊗ I_C exactly (x̃ = (x, 1))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Dropout(0.2), nn.Linear(3, 2, dtype=torch.float64))
    model = NetDropoutModel(net, X, y)
    theta = torch.randn(2, model.n_params, generator=g, dtype=torch.float64)
    H = model.hessian_matrix(theta)
    Xt = torch.cat([X, torch.ones(7, 1, dtype=torch.float64)], dim=1)
    gram = Xt.T @ Xt / 7  # (4, 4) over (x, 1)
    # θ = (W row-major (2×3), b (2)): index of W[c, j] is 3c + j, of b[c] is 6 + c
    idx = lambda c, j: 3 * c + j if j < 3 else 6 + c  # noqa: E731
    exact = torch.zeros(8, 8, dtype=torch.float64)
    for c in range(2):
        for j in range(4):
            for k in range(4):
                exact[idx(c, j), idx(c, k)] = gram[j, k]
    assert torch.allclose(H, exact.expand(2, -1, -1), atol=1e-13)
    V = torch.randn(2, 3, 8, generator=g, dtype=torch.float64)
    assert torch.allclose(model.hvp(theta, V), V @ exact, atol=1e-13)


def test_hutchpp_is_exact_when_the_sketch_spans_the_range():
    H = _symmetric(2, 30, [9.0, -4.0, 2.0] + [0.0] * 27, 3)
    est = hutchpp_trace(dense_matvec(H), 2, 30, generator=torch.Generator().manual_seed(0),
                        n_sketch=5, n_probes=4)
    assert torch.allclose(est.trace, torch.full((2,), 7.0, dtype=torch.float64), atol=1e-10)
    assert float(est.stderr.max()) < 1e-10 and est.matvecs == 14


def test_hutchpp_trace_is_unbiased_within_its_standard_error():
    lam = [30.0, 10.0] + [0.5 + 0.01 * i for i in range(98)]
    H = _symmetric(40, 100, lam, 4)
    est = hutchpp_trace(dense_matvec(H), 40, 100, generator=torch.Generator().manual_seed(5),
                        n_sketch=4, n_probes=30)
    z = (est.trace - sum(lam)) / est.stderr
    # 40 independent estimates: each |z| > 4.5 has probability < 1e-4 (t with 29 dof), all 40
    # pass with probability > 0.995; their mean z is within 4 / sqrt(40) of 0 likewise.
    assert float(z.abs().max()) < 4.5
    assert abs(float(z.mean())) < 4 / 40**0.5


def test_spectral_argument_errors_are_one_line():
    mv = dense_matvec(torch.eye(3, dtype=torch.float64).expand(1, -1, -1))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="`k` must be at most D = 3; got 4"):
        lanczos_top(mv, 1, 3, 4, generator=g)
    with pytest.raises(ValueError, match=r"`max_iter` must be in \[k, D\]"):
        lanczos_top(mv, 1, 3, 2, generator=g, max_iter=1)
    with pytest.raises(ValueError, match="`n_probes` must be at least 2"):
        hutchpp_trace(mv, 1, 3, generator=g, n_sketch=1, n_probes=1)
    with pytest.raises(ValueError, match="`matvec` must map"):
        lanczos_top(lambda V: V[:, :, :2], 1, 3, 1, generator=g)
    with pytest.raises(ValueError, match="`theta` must have shape"):
        dense_hessian(lambda t: t.sum(), torch.zeros(3))
