"""derive_sme: the derived SMEs equal the hand-written ones exactly, the sampled derivation agrees
with the exact one within its Monte-Carlo error, and what the theorem does not cover is refused.

Exactness: ``b₀``, the order-2 drift and ``Σ`` of the derived SMEs of ``sgd`` (least squares and
the two-layer net), ``dropout`` (two-layer) and ``dropout-net`` (last-layer dropout) against the
hand-written closed forms, ≤ 1e-12 relative in float64 at random states (measured: ≤ 1e-15). The
order-2 drift is also checked on a non-gradient (rotational) linear update, where ``(∇b₀) b₀``
and ``(∇b₀)ᵀ b₀`` differ — for every gradient update ``∇b₀`` is symmetric and they coincide.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

import smetool
from smetool import (
    BatchMean,
    DerivedAlgorithm,
    DropoutAlgorithm,
    FiniteNoise,
    SampledNoise,
    SGDLeastSquares,
    SGDTwoLayer,
    derive_sme,
)
from smetool.algorithms.derive import DerivedSME, SampledDerivedSME
from smetool.algorithms.derived_two_layer import dropconnect_problem, dropout_sgd_problem
from smetool.algorithms.dropout_net import builtin_problem
from smetool.models.dropout_problem import DropoutProblem
from smetool.models.gaussian_dropout import gaussian_default_problem
from smetool.models.two_layer_updates import DropoutMiniBatchUpdate

F64 = torch.float64
RTOL = 1e-12


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def states(x0: torch.Tensor, n: int = 3, spread: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x0 + spread * torch.randn(n, x0.numel(), generator=g, dtype=F64)


def check_against(derived: DerivedSME, hand1, hand2, covariance, x: torch.Tensor) -> dict:
    """Relative gaps of the order-1 drift, order-2 drift and covariance (all must be ≤ RTOL)."""
    lr = derived.lr
    d2 = derive_sme(derived.update, derived.law, lr=lr, order=2)
    want = covariance(x)
    gaps = {"drift1": rel(derived.drift(0.0, x), hand1.drift(0.0, x)),
            "drift2": rel(d2.drift(0.0, x), hand2.drift(0.0, x)),
            "covariance": rel(derived.covariance(x), want)}
    F = d2.diffusion(0.0, x)
    gaps["factor"] = rel(F @ F.transpose(1, 2), lr * want)
    assert max(gaps.values()) <= RTOL, gaps
    return gaps


# ---------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("batch_size", [1, 2])
@pytest.mark.parametrize("batch_mean", [False, True], ids=["enumerated", "batch-mean"])
def test_sgd_least_squares_derived_equals_hand_written(batch_size, batch_mean):
    sgd = SGDLeastSquares.default(batch_size=batch_size)

    def update(x, index):
        return -sgd.batch_gradient(x, index)

    law = FiniteNoise.minibatches(sgd.n_points, batch_size)
    derived = derive_sme(BatchMean(update) if batch_mean else update, law, lr=0.1, order=1,
                         x0=sgd.x0)
    x = states(sgd.x0)
    check_against(derived, sgd.sme(0.1, 1), sgd.sme(0.1, 2), sgd.noise_covariance, x)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_sgd_two_layer_derived_equals_hand_written(batch_size):
    sgd = SGDTwoLayer.default(batch_size=batch_size)

    def update(x, index):
        return -sgd.batch_gradient(x, index)

    derived = derive_sme(update, FiniteNoise.minibatches(sgd.n_points, batch_size), lr=0.05,
                         x0=sgd.x0)
    x = states(sgd.x0)
    check_against(derived, sgd.sme(0.05, 1), sgd.sme(0.05, 2), sgd.noise_covariance, x)


def _full_batch_dropout_update(problem: DropoutProblem):
    def update(x, mask):
        return -problem.dropout_loss_grad(x, mask)[1]
    return update


def test_dropout_two_layer_derived_equals_hand_written():
    """All 2^16 masks of the dropout plug-in's network, differentiated by torch.func.jvp."""
    algo = DropoutAlgorithm.verification_default()
    problem = algo.problem
    law = FiniteNoise.bernoulli_masks(problem.width, problem.keep_prob)
    derived = derive_sme(_full_batch_dropout_update(problem), law, lr=0.05)
    x = states(algo.theta0, n=1, spread=0.2)
    check_against(derived, algo.sme(0.05, 1), algo.sme(0.05, 2), problem.noise_covariance, x)


def test_dropout_closed_form_directional_derivative_equals_the_enumeration():
    """The mini-batch update's closed-form derivative (DifferentiableUpdate) on the full batch is
    full-batch dropout GD: the same exact SME."""
    algo = DropoutAlgorithm.verification_default(width=8)
    problem = algo.problem
    update = DropoutMiniBatchUpdate(problem.net, problem.X, problem.y)
    whole = FiniteNoise(torch.arange(problem.n_points).unsqueeze(0))  # the one batch: all data
    law = FiniteNoise.product(FiniteNoise.bernoulli_masks(problem.width, problem.keep_prob), whole)
    derived = derive_sme(update, law, lr=0.05, x0=algo.theta0)
    x = states(algo.theta0)
    check_against(derived, algo.sme(0.05, 1), algo.sme(0.05, 2), problem.noise_covariance, x)


def test_dropout_net_last_layer_derived_equals_hand_written():
    algo = builtin_problem()  # MLP on digits, last-layer dropout: exact closed forms
    model, exact = algo.model, algo.closed_form
    layer = model.layers[0]
    law = FiniteNoise.bernoulli_masks(layer.mask_shape, layer.keep_prob)

    def update(x, mask):
        return -model.dropout_loss_grad(x, (mask,))[1]

    derived = derive_sme(update, law, lr=0.05, x0=algo.theta0)
    x = states(algo.theta0, n=2, spread=0.05)
    check_against(derived, algo.sme(0.05, 1), algo.sme(0.05, 2), exact.noise_covariance, x)


def test_gaussian_dropout_closed_form_equals_gauss_hermite_enumeration():
    """The gradient is quadratic in the Gaussian multipliers, so the 3-node Gauss–Hermite rule
    per neuron (exact to degree 5) gives b₀, Σ and (∇b₀) b₀ exactly."""
    problem, theta0 = gaussian_default_problem(n_points=6, width=3, keep_prob=0.7)
    r = math.sqrt(3.0 * problem.v)
    node = FiniteNoise(torch.tensor([[1.0 - r], [1.0], [1.0 + r]], dtype=F64),
                       torch.tensor([1 / 6, 2 / 3, 1 / 6], dtype=F64))
    law = FiniteNoise.product(node, node, node)

    def update(x, xi):
        return -problem.dropout_loss_grad(x, torch.cat(xi, dim=1))[1]

    derived = derive_sme(update, law, lr=0.05, x0=theta0)
    x = states(theta0)
    grad = problem.expected_loss_grad(x)
    assert rel(derived.mean(x), -grad) <= RTOL
    assert rel(derived.correction(x), problem.expected_loss_hvp(x, grad)) <= RTOL
    assert rel(derived.covariance(x), problem.noise_covariance(x)) <= RTOL
    F = problem.noise_factor(x)
    assert rel(F @ F.transpose(1, 2), problem.noise_covariance(x)) <= RTOL
    z = torch.randn(3, problem.noise_dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert rel(problem.noise_factor_matvec(x, z), torch.einsum("pdm,pm->pd", F, z)) <= RTOL
    moment = problem.grad_second_moment(x)
    assert rel(moment.trace_sigma, torch.diagonal(problem.noise_covariance(x), dim1=1,
                                                  dim2=2).sum(-1)) <= RTOL


def test_order2_drift_of_a_rotational_update_uses_the_jacobian_not_its_transpose():
    """``A = −K x + ξ`` with a non-symmetric ``K``: order-2 drift ``−Kx − (lr/2) K² x`` exactly
    (``(∇b₀)ᵀ b₀`` would give ``−(lr/2) KᵀK x``)."""
    K = torch.tensor([[1.0, 2.0], [-0.5, 1.5]], dtype=F64)
    signs = FiniteNoise(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]],
                                     dtype=F64))

    def update(x, xi):
        return -x @ K.T + 0.3 * xi

    lr = 0.1
    sme = derive_sme(update, signs, lr=lr, order=2, x0=torch.ones(2, dtype=F64))
    x = states(torch.ones(2, dtype=F64))
    want = -x @ K.T - 0.5 * lr * x @ (K @ K).T
    assert rel(sme.drift(0.0, x), want) <= RTOL
    assert rel(sme.covariance(x), 0.09 * 0.5 * torch.eye(2, dtype=F64).expand(3, 2, 2)) <= RTOL


@pytest.mark.parametrize("batch_size,replacement", [(1, True), (3, True), (2, False), (5, False)])
def test_batch_mean_sums_over_examples_exactly(batch_size, replacement):
    """The BatchMean reduction (examples instead of batches) equals enumerating every batch."""
    algo = dropout_sgd_problem(width=3, n_points=5, batch_size=1)
    law = FiniteNoise.product(FiniteNoise.bernoulli_masks(3, 0.9),
                              FiniteNoise.minibatches(5, batch_size, replacement=replacement))
    inner = algo.update.update
    naive = derive_sme(inner, law, lr=0.1, order=2)
    fast = derive_sme(BatchMean(inner), law, lr=0.1, order=2, x0=algo.x0)
    x = states(algo.x0, spread=0.5)
    assert rel(fast.drift(0.0, x), naive.drift(0.0, x)) <= RTOL
    assert rel(fast.covariance(x), naive.covariance(x)) <= RTOL
    F = fast.diffusion(0.0, x)
    assert rel(F @ F.transpose(1, 2), naive.lr * naive.covariance(x)) <= RTOL
    dW = torch.randn(3, fast.noise_dim, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert rel(fast.diffusion_product(0.0, x, dW), torch.einsum("pdm,pm->pd", F, dW)) <= RTOL


def test_dropout_sgd_sme_against_full_batch_closed_forms():
    """dropout-sgd's derived SME against an independent assembly from closed forms: ``b₀ = −∇L_S``
    (full batch), the order-2 term ``∇²L_S ∇L_S``, and
    ``Σ = c_B [mean_i Σ_drop({x_i}) + Cov_i ∇L_{x_i}] + (1 − c_B) Σ_drop(all)``, ``c_B = 1/B``."""
    algo = dropout_sgd_problem(batch_size=3)
    problem = algo.problem
    sme = algo.exact_sme(0.1, 2)
    x = states(algo.x0)
    grad = problem.expected_loss_grad(x)
    assert rel(sme.mean(x), -grad) <= RTOL
    assert rel(sme.correction(x), problem.expected_loss_hvp(x, grad)) <= RTOL
    singles = [DropoutProblem(problem.X[i:i + 1, :1], problem.y[i:i + 1], width=problem.width,
                              keep_prob=problem.keep_prob) for i in range(problem.n_points)]
    grads = torch.stack([s.expected_loss_grad(x) for s in singles])  # (n, P, D)
    centred = grads - grads.mean(dim=0)
    between = torch.einsum("ipd,ipe->pde", centred, centred) / problem.n_points
    within = torch.stack([s.noise_covariance(x) for s in singles]).mean(dim=0)
    c = 1.0 / 3
    want = c * (within + between) + (1 - c) * problem.noise_covariance(x)
    assert rel(sme.covariance(x), want) <= RTOL


def test_covariance_split_parts_add_up_and_match_their_definitions():
    algo = dropout_sgd_problem(width=3, n_points=5, batch_size=2)
    x = states(algo.x0)
    split = algo.noise_split(x)
    assert rel(split.first + split.second + split.interaction, split.total) <= RTOL
    assert rel(split.total, algo.exact_sme(0.1).covariance(x)) <= RTOL
    # dropout main effect: the full-batch dropout covariance (E over batches of a batch gradient
    # is the full gradient, with replacement)
    assert rel(split.first, algo.problem.noise_covariance(x)) <= RTOL
    summary = split.summary()
    assert abs(sum(summary[k]["share"] for k in ("first", "second", "interaction")) - 1) < 1e-12


def test_dropconnect_mean_is_the_gradient_of_the_expected_loss():
    """``b₀ = −∇ E_M R(θ; M)`` (the law does not depend on θ), by autograd of the enumerated
    expected loss."""
    algo = dropconnect_problem()
    problem = algo.problem
    x = states(algo.x0).requires_grad_(True)
    masks = algo.law.take(torch.arange(algo.law.size), dtype=F64)
    w = algo.law.weights.to(F64)
    a, W = problem.net.split(x)
    z = torch.einsum("pmd,smd,nd->psmn", W, masks, problem.X)
    e = (a[:, None, :, None] * torch.tanh(z)).sum(2) - problem.y
    expected = 0.5 * ((e * e).mean(-1) * w).sum(-1)
    (grad,) = torch.autograd.grad(expected.sum(), x)
    assert rel(algo.exact_sme(0.1).mean(x.detach()), -grad) <= RTOL


# ---------------------------------------------------------------------------------- sampled
def test_sampled_derivation_agrees_with_the_exact_one_within_its_error():
    """``sample_drift`` (order 2) and ``sample_noise`` of the sampled SME against the exact
    drift and ``lr Σ`` of the same law, on 200,000 draws at one state: z-scores of the drift's
    ``D`` coordinates and of the ``D(D+1)/2`` entries of the second moment of the noise, each
    within ``Φ⁻¹(1 − α/(2K))`` for ``K`` tests (Bonferroni, false-failure probability α = 1e-6,
    fixed seed)."""
    sgd = SGDTwoLayer.default(batch_size=2, width=2, n_points=6)

    def update(x, index):
        return -sgd.batch_gradient(x, index)

    def draw(n, generator, *, dtype, device):
        return torch.randint(sgd.n_points, (n, 2), generator=generator)

    lr, N = 0.1, 200_000
    exact = derive_sme(update, FiniteNoise.minibatches(sgd.n_points, 2), lr=lr, order=2)
    sampled = derive_sme(update, SampledNoise(draw), lr=lr, order=2, x0=sgd.x0)
    assert isinstance(sampled, SampledDerivedSME)
    x = sgd.x0.expand(N, -1).clone()
    gen = torch.Generator().manual_seed(0)
    D = x.shape[1]
    tests = D + D * (D + 1) // 2
    z_max = norm.ppf(1 - 1e-6 / (2 * tests))
    drift = sampled.sample_drift(0.0, x, gen)
    want = exact.drift(0.0, x[:1])[0]
    z = (drift.mean(0) - want) / (drift.std(0) / math.sqrt(N))
    assert float(z.abs().max()) < z_max, z
    zeta = sampled.sample_noise(0.0, x, gen)
    outer = (zeta.unsqueeze(2) * zeta.unsqueeze(1)).reshape(N, -1)
    iu = torch.triu_indices(D, D)
    cols = iu[0] * D + iu[1]
    target = (lr * exact.covariance(x[:1])[0]).reshape(-1)[cols]
    z2 = (outer[:, cols].mean(0) - target) / (outer[:, cols].std(0) / math.sqrt(N))
    assert float(z2.abs().max()) < z_max, z2


def test_gaussian_dropout_closed_form_against_sampled_derivation():
    """The Gaussian-dropout SME (closed form) against the derived SME with Gaussian multipliers
    drawn (SampledNoise): order-2 drift and noise second moment, Bonferroni z-test, α = 1e-6."""
    problem, theta0 = gaussian_default_problem(n_points=6, width=3, keep_prob=0.7)

    def update(x, scale):
        return -problem.dropout_loss_grad(x, scale)[1]

    def draw(n, generator, *, dtype, device):
        return problem.sample_scale(n, generator, dtype=dtype, device=device)

    lr, N = 0.1, 200_000
    sampled = derive_sme(update, SampledNoise(draw), lr=lr, order=2, x0=theta0)
    x = theta0.expand(N, -1).clone()
    gen = torch.Generator().manual_seed(0)
    D = x.shape[1]
    z_max = norm.ppf(1 - 1e-6 / (2 * (D + D * D)))
    grad = problem.expected_loss_grad(x[:1])
    want = (-grad - 0.5 * lr * problem.expected_loss_hvp(x[:1], grad))[0]
    drift = sampled.sample_drift(0.0, x, gen)
    assert float(((drift.mean(0) - want) / (drift.std(0) / math.sqrt(N))).abs().max()) < z_max
    zeta = sampled.sample_noise(0.0, x, gen)
    outer = (zeta.unsqueeze(2) * zeta.unsqueeze(1)).reshape(N, -1)
    target = (lr * problem.noise_covariance(x[:1])[0]).reshape(-1)
    keep = outer.std(0) > 0
    z = (outer.mean(0) - target)[keep] / (outer.std(0)[keep] / math.sqrt(N))
    assert float(z.abs().max()) < z_max


# ---------------------------------------------------------------------------------- the plug-in
def test_derived_algorithm_meets_the_separable_noise_contract():
    sgd = SGDLeastSquares.default(batch_size=2)

    def update(x, index):
        return -sgd.batch_gradient(x, index)

    algo = DerivedAlgorithm(update, FiniteNoise.minibatches(6, 2), sgd.x0)
    x = states(sgd.x0)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    stepped = algo.step(x, 0.1, g1)
    noise = algo.draw(3, 0.1, g2, dtype=F64, device=torch.device("cpu"))
    assert torch.equal(stepped, algo.step_with(x, 0.1, noise))
    assert rel(algo.mean_step(x, 0.1), sgd.mean_step(x, 0.1)) <= RTOL
    assert rel(algo.step_covariance(x, 0.1), sgd.step_covariance(x, 0.1)) <= RTOL
    assert algo.has_exact_mean()
    names = [c.name for c in algo.negative_controls(0.1, 2)]
    assert names == ["order-1 SME", "noise-free"]


def test_the_discrete_law_of_a_finite_noise_draw():
    """Draws of a weighted finite law: frequencies within 6 SE of the weights (P(false failure)
    < 1e-7 per support point, fixed seed)."""
    law = FiniteNoise.minibatches(4, 2)
    N = 100_000
    index = law.draw(N, torch.Generator().manual_seed(0), dtype=F64)
    batches = [tuple(sorted(row)) for row in index.tolist()]
    support = [tuple(row) for row in law.take(torch.arange(law.size), dtype=F64).tolist()]
    for s, w in zip(support, law.weights.tolist()):
        freq = sum(b == s for b in batches) / N
        assert abs(freq - w) < 6 * math.sqrt(w * (1 - w) / N)


def test_product_law_support_and_weights():
    a = FiniteNoise(torch.tensor([[0.0], [1.0]]), torch.tensor([0.25, 0.75]))
    b = FiniteNoise(torch.tensor([10, 20, 30]))
    law = FiniteNoise.product(a, b)
    assert law.size == 6
    values = law.take(torch.arange(6), dtype=F64)
    assert values[0][:, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert values[1].tolist() == [10, 20, 30, 10, 20, 30]
    assert torch.allclose(law.weights, torch.tensor([1 / 12] * 3 + [1 / 4] * 3, dtype=F64))
    masks = FiniteNoise.bernoulli_masks(2, 0.9)
    assert torch.allclose(masks.weights.sort().values,
                          torch.tensor([0.01, 0.09, 0.09, 0.81], dtype=F64))


# ---------------------------------------------------------------------------------- refusals
Y = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=F64)
LAW = FiniteNoise(torch.arange(4))
X0 = torch.zeros(1, dtype=F64)


def good(x, i):
    return -(x - Y[i].unsqueeze(1))


def test_refuses_an_update_that_returns_the_new_iterate():
    with pytest.raises(ValueError, match=r"increment A .* not the new iterate"):
        derive_sme(lambda x, i: x + 0.1 * good(x, i), LAW, lr=0.1, x0=X0)
    derive_sme(lambda x, i: x + 0.1 * good(x, i), LAW, lr=0.1, x0=X0, check_form=False)


def test_refuses_a_law_that_depends_on_lr():
    with pytest.raises(ValueError, match="must not depend on the learning rate"):
        SampledNoise(lambda n, generator, *, dtype, device, lr: torch.zeros(n, 1))
    with pytest.raises(TypeError, match="whose law does not depend on lr; got function"):
        derive_sme(good, lambda lr: LAW, lr=0.1)


def test_refuses_a_non_differentiable_update_at_order_2_naming_the_input():
    def kinked(x, i):  # ReLU(x[1] − 1) has a kink at the probe point, in input 1 only
        out = good(x, i)
        return torch.cat([out[:, :1], -torch.relu(x[:, 1:] - 1.0)], dim=1)

    x0 = torch.tensor([0.5, 1.0], dtype=F64)
    law = FiniteNoise(torch.arange(4))

    def two(x, i):
        return torch.cat([-(x[:, :1] - Y[i].unsqueeze(1)), kinked(x, i)[:, 1:]], dim=1)

    derive_sme(two, law, lr=0.1, order=1, x0=x0)  # order 1 needs no derivative
    with pytest.raises(ValueError, match=r"not differentiable in x at x0 .* input x\[1\]"):
        derive_sme(two, law, lr=0.1, order=2, x0=x0)
    with pytest.raises(ValueError, match=r"input x\[0\] differs from a central difference"):
        derive_sme(lambda x, i: good(x, i) * float(x.sum()), LAW, lr=0.1, order=2, x0=X0 + 1)
    with pytest.raises(ValueError, match=r"differentiable in x at order 2 .* jvp raised"):
        derive_sme(lambda x, i: good(torch.from_numpy(x.numpy()), i), LAW, lr=0.1, order=2,
                   x0=X0 + 1)


def test_refuses_an_infinite_sigma():
    with pytest.raises(ValueError, match=r"support point 3\): Σ = Cov A would not be finite"):
        derive_sme(lambda x, i: good(x, i) / (3 - i).unsqueeze(1).to(x), LAW, lr=0.1, x0=X0)

    def heavy(n, generator, *, dtype, device):
        u = torch.rand(n, 1, generator=generator, dtype=dtype)
        return torch.where(u < 0.01, torch.full_like(u, math.inf), u)

    with pytest.raises(ValueError, match=r"not finite for \d+ of 256 draws"):
        derive_sme(lambda x, xi: -x + xi, SampledNoise(heavy), lr=0.1, x0=X0)


def test_refuses_bad_arguments_with_one_line_messages():
    with pytest.raises(ValueError, match="`order` must be 1 or 2; got 3"):
        derive_sme(good, LAW, lr=0.1, order=3)
    with pytest.raises(ValueError, match="`lr` must be a positive finite number; got -1"):
        derive_sme(good, LAW, lr=-1)
    with pytest.raises(ValueError, match="must return A.* with the shape of x"):
        derive_sme(lambda x, i: x[:, :0], LAW, lr=0.1, x0=X0)
    with pytest.raises(ValueError, match="`weights` must sum to 1; got 0.5"):
        FiniteNoise(torch.arange(2), [0.25, 0.25])
    with pytest.raises(ValueError, match="same first size"):
        FiniteNoise((torch.arange(2), torch.arange(3)))
    with pytest.raises(ValueError, match="keep_prob` must be in"):
        FiniteNoise.bernoulli_masks(3, 1.5)
    with pytest.raises(ValueError, match="BatchMean: `update.*must be the mean"):
        derive_sme(BatchMean(lambda x, i: -(x - Y[i].mean(1, keepdim=True)) * i.shape[1]),
                   FiniteNoise.minibatches(4, 2), lr=0.1, x0=X0)
    with pytest.raises(ValueError, match="BatchMean: the noise law must end with"):
        derive_sme(BatchMean(good), LAW, lr=0.1, x0=X0)
    with pytest.raises(ValueError, match="`x0` must have shape"):
        DerivedAlgorithm(good, LAW, torch.zeros(2, 1, dtype=F64))


@pytest.mark.parametrize("batch_size,replacement", [(1, True), (4, True), (3, False)])
def test_dropout_net_mini_batch_closed_form_equals_the_derived_sme(batch_size, replacement):
    """Last-layer dropout SGD on mini-batches: the closed form of the mini-batch identity against
    derive_sme with every mask × example enumerated (BatchMean), ≤ 1e-12."""
    from smetool.algorithms.dropout_net_minibatch import MiniBatchNetDropoutSME, NetMiniBatchUpdate
    from smetool.models.net_dropout_minibatch import MiniBatchLastLayerDropout

    algo = builtin_problem(width=3, n_samples=10)
    closed = MiniBatchLastLayerDropout(algo.closed_form, batch_size, replacement=replacement)
    law = FiniteNoise.product(FiniteNoise.bernoulli_masks(3, 0.9),
                              FiniteNoise.minibatches(10, batch_size, replacement=replacement))
    derived = derive_sme(BatchMean(NetMiniBatchUpdate(algo.model)), law, lr=0.05, x0=algo.theta0)
    x = states(algo.theta0, n=2, spread=0.05)
    check_against(derived, MiniBatchNetDropoutSME(closed, 0.05, 1),
                  MiniBatchNetDropoutSME(closed, 0.05, 2), closed.noise_covariance, x)
    z = torch.randn(2, closed.noise_dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert rel(closed.noise_factor_matvec(x, z),
               torch.einsum("pdm,pm->pd", closed.noise_factor(x), z)) <= RTOL


def test_dropout_net_with_mini_batches_is_a_plugin_exact_or_sampled():
    from smetool.algorithms.dropout_net_minibatch import (
        ExactNetDropoutMiniBatch,
        NetDropoutMiniBatch,
    )

    exact = builtin_problem(batch_size=8)
    assert isinstance(exact, ExactNetDropoutMiniBatch) and exact.exact
    x = exact.initial_state(2)
    noise = exact.draw(2, 0.04, torch.Generator().manual_seed(0), dtype=F64,
                       device=torch.device("cpu"))
    assert torch.equal(exact.step(x, 0.04, torch.Generator().manual_seed(0)),
                       exact.step_with(x, 0.04, noise))
    assert [c.name for c in exact.negative_controls(0.04, 2)] == ["no R_1", "order-1 SME",
                                                                   "noise-free"]
    algo = builtin_problem(batch_size=8, placement="every", depth=2)
    assert isinstance(algo, NetDropoutMiniBatch) and not algo.exact
    with pytest.raises(ValueError, match=r"`order` must be one of \(1,\)"):
        algo.sme(0.04, 2)
    model = algo.model
    x = algo.initial_state(3)
    masks, index = algo.draw(3, 0.04, torch.Generator().manual_seed(0), dtype=F64,
                             device=torch.device("cpu"))
    assert index.shape == (3, 8)
    full = torch.arange(model.n_points).expand(3, -1)
    assert torch.allclose(-algo.update(x, (masks, full)), model.dropout_loss_grad(x, masks)[1],
                          rtol=1e-12, atol=1e-15)
    assert isinstance(algo.sme(0.04), SampledDerivedSME)
    assert [c.name for c in algo.negative_controls(0.04, 1)] == ["half-speed time", "no R_1"]
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer in \[1, n\]"):
        builtin_problem(batch_size=1000)


@pytest.mark.parametrize("name", ["dropout-sgd", "dropconnect", "gaussian-dropout"])
def test_new_plugins_are_registered_with_references(name):
    from smetool.algorithms.registry import get_plugin

    spec = get_plugin(name)
    algo = spec.build()
    assert algo.name == name and spec.orders == (1, 2)
    keys = {ref.key for ref in algo.cited_references()}
    assert "li2019sme" in keys
    assert {"dropout-sgd": "srivastava2014dropout", "dropconnect": "wan2013dropconnect",
            "gaussian-dropout": "srivastava2014dropout"}[name] in keys
    assert isinstance(algo.sme(spec.lrs[0], 2), smetool.SDE)


def test_sampled_order2_drift_uses_a_closed_form_derivative_without_bias():
    """DropConnect (a DifferentiableUpdate) with its masks drawn: the sampled order-2 drift
    against the exact one, z-test on 100,000 draws, Bonferroni over the D coordinates,
    false-failure probability 1e-6."""
    algo = dropconnect_problem()
    law = algo.law

    def draw(n, generator, *, dtype, device):
        return law.draw(n, generator, dtype=dtype, device=device)

    lr, N = 0.1, 100_000
    sampled = derive_sme(algo.update, SampledNoise(draw), lr=lr, order=2)
    x = algo.x0.expand(N, -1).clone()
    drift = sampled.sample_drift(0.0, x, torch.Generator().manual_seed(0))
    want = algo.exact_sme(lr, 2).drift(0.0, x[:1])[0]
    z = (drift.mean(0) - want) / (drift.std(0) / math.sqrt(N))
    assert float(z.abs().max()) < norm.ppf(1 - 1e-6 / (2 * x.shape[1])), z


def test_sampled_sme_steps_have_the_exact_covariance():
    """One Euler–Maruyama step ``x + h b̂ + √(h − γh²) ζ`` of the sampled SME has covariance
    exactly ``lr h Σ`` (the drift estimate's own noise compensated; uncompensated it would be
    ``(lr h + h²) Σ``, 1.5× at ``h = lr/2``): z-test of the ``D(D+1)/2`` entries on 200,000
    steps, Bonferroni, false-failure probability 1e-6."""
    from smetool.solvers import EulerMaruyama

    sgd = SGDLeastSquares.default(batch_size=1)

    def update(x, index):
        return -sgd.batch_gradient(x, index)

    def draw(n, generator, *, dtype, device):
        return torch.randint(sgd.n_points, (n, 1), generator=generator)

    lr, h, N = 0.2, 0.1, 200_000
    sampled = derive_sme(update, SampledNoise(draw), lr=lr, order=1)
    x = sgd.x0.expand(N, -1).clone()
    step = EulerMaruyama().step(sampled, 0.0, x, h, None, torch.Generator().manual_seed(0)) - x
    centred = step - step.mean(0)
    D = x.shape[1]
    iu = torch.triu_indices(D, D)
    outer = (centred.unsqueeze(2) * centred.unsqueeze(1)).reshape(N, -1)[:, iu[0] * D + iu[1]]
    want = (lr * h * sgd.noise_covariance(x[:1])[0]).reshape(-1)[iu[0] * D + iu[1]]
    z = (outer.mean(0) - want) / (outer.std(0) / math.sqrt(N))
    assert float(z.abs().max()) < norm.ppf(1 - 1e-6 / (2 * len(want))), z
