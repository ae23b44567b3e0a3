"""Small-noise control variates: exactly unbiased, and exact on linear problems.

The control variates ``CV₁ = ∇g(θ̄)·δ`` and ``CV₂ = ½ δᵀ∇²g(θ̄)δ − ½ tr(∇²g C)`` have mean zero
whatever the linearisation. On a linear problem with additive noise the tangent *is* the
deviation from the noise-free path, so for a quadratic ``g`` the corrected samples
``g − CV₁ − CV₂`` are all equal to ``E g`` — an exact (non-random) check of the whole chain:
the tangent, the covariance recursion, the derivatives of ``g`` and the subtraction.
"""

from __future__ import annotations

import math

import pytest
import torch

import smetool
from smetool import (
    EulerMaruyama,
    FunctionSDE,
    NoiseKind,
    SeparableNoise,
    SeparableStochasticGradient,
    verify,
)
from smetool.algorithms import DropoutAlgorithm
from smetool.montecarlo import PathSample, TangentPaths, VarianceReduction
from smetool.montecarlo.control import control_values, linearize_sde
from smetool.verification.producers import AlgorithmProducer, CoupledSMEProducer

F64 = torch.float64
A = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
SIGMA = 0.7
X0 = torch.tensor([2.0, -1.0], dtype=F64)
TESTS = {"f": lambda x: 0.5 * ((x @ A) * x).sum(dim=1), "x0": lambda x: x[:, 0],
         "x0x1": lambda x: x[:, 0] * x[:, 1]}


class NoisyQuadraticGD(SeparableStochasticGradient):
    """GD on ½xᵀAx with additive Gaussian gradient noise σ ξ (exact moments, linear)."""

    name = "noisy-quadratic"

    def initial_state(self, n_paths, *, dtype=None, device=None):
        return X0.to(dtype=dtype or F64).expand(n_paths, -1).clone()

    def draw_gradient_noise(self, n_paths, generator, *, dtype, device):
        return torch.randn(n_paths, 2, generator=generator, dtype=dtype, device=device)

    def gradient_with(self, x, noise):
        return x @ A.to(x) + SIGMA * noise

    def mean_gradient(self, x):
        return x @ A.to(x)

    def gradient_covariance(self, x):
        return SIGMA**2 * torch.eye(2, dtype=x.dtype).expand(x.shape[0], 2, 2)

    def sme(self, lr, order=1):
        scale = math.sqrt(lr) * SIGMA
        return FunctionSDE(lambda t, x: -(x @ A.to(x)), lambda t, x: torch.full_like(x, scale),
                           noise_kind=NoiseKind.DIAGONAL)

    def test_functions(self):
        return dict(TESTS)


def _corrected(sample: PathSample) -> torch.Tensor:
    values = smetool.montecarlo.evaluate_test_functions(TESTS, sample.states)
    return values - control_values(TESTS, sample.tangent)


def test_the_discrete_tangent_is_exact_on_a_linear_problem():
    """Noisy GD: δ_k = x_k − θ̄_k exactly, so every corrected quadratic sample equals E g."""
    alg = NoisyQuadraticGD()
    lr, steps = 0.1, 7
    producer = AlgorithmProducer(alg, lr, steps, F64, torch.device("cpu"),
                                 VarianceReduction.QUADRATIC)
    sample = producer(500, torch.Generator().manual_seed(0))
    corrected = _corrected(sample)[:, 0]  # (K, P)
    # The exact moments: x_k = Mᵏ x0 − lr Σ_j M^{k−1−j} σ ξ_j with M = I − lr A.
    M = torch.eye(2, dtype=F64) - lr * A
    mean = torch.linalg.matrix_power(M, steps) @ X0
    cov = sum(lr**2 * SIGMA**2 * torch.linalg.matrix_power(M, j) @ torch.linalg.matrix_power(M, j).T
              for j in range(steps))
    exact = {"f": 0.5 * mean @ A @ mean + 0.5 * (A * cov).sum(), "x0": mean[0],
             "x0x1": mean[0] * mean[1] + cov[0, 1]}
    for k, name in enumerate(TESTS):
        # 1e-9: the tangent's maps come from central differences, accurate to ~1e-10.
        assert torch.allclose(corrected[k], torch.full_like(corrected[k], float(exact[name])),
                              rtol=1e-9, atol=1e-10), name
    raw = smetool.montecarlo.evaluate_test_functions(TESTS, sample.states)[:, 0]
    assert float(raw[0].std()) > 0.05  # the uncorrected samples do vary


def test_the_sde_tangent_is_exact_for_euler_maruyama_on_a_linear_sde():
    """Euler–Maruyama on dX = −AX dt + s dW: the tangent is X − θ̄ exactly, and C_T = Cov X_T."""
    alg = NoisyQuadraticGD()
    lr, r, T = 0.1, 2, 0.4
    sde = alg.sme(lr)
    producer = CoupledSMEProducer(alg, sde, EulerMaruyama(), T, lr / r, F64,
                                  torch.device("cpu"), VarianceReduction.QUADRATIC)
    sample = producer(400, torch.Generator().manual_seed(1))
    corrected = _corrected(sample)[:, 0]
    mean, _, cov = linearize_sde(sde, EulerMaruyama(), X0, 0.0, lr / r, round(T * r / lr),
                                 quadratic=True)
    m, C = mean[-1], cov[-1]
    exact = 0.5 * m @ A @ m + 0.5 * (A * C).sum()
    assert torch.allclose(corrected[0], torch.full_like(corrected[0], float(exact)), rtol=1e-9)
    # and the exact covariance of the Euler–Maruyama scheme: C_{j+1} = M C Mᵀ + h s² I
    h, s2 = lr / r, lr * SIGMA**2
    Mh = torch.eye(2, dtype=F64) - h * A
    Cx = torch.zeros(2, 2, dtype=F64)
    for _ in range(round(T / h)):
        Cx = Mh @ Cx @ Mh.T + h * s2 * torch.eye(2, dtype=F64)
    torch.testing.assert_close(C, Cx, rtol=1e-9, atol=1e-14)


def test_control_variates_change_an_estimate_only_by_their_mean_which_is_zero():
    """Same seed with and without control variates: the raw samples are identical, so the two
    estimates differ by mean(CV), whose expectation is zero: |difference| ≤ 4.4 SE(CV) for every
    row (false-failure probability ≈ 1e-5 per row, 16 rows). The corrected standard errors are
    far smaller (the variance reduction is > 20 at every learning rate)."""
    alg = DropoutAlgorithm.verification_default(width=6, n_points=8)
    args = dict(horizon=0.2, seed=4, progress=False, controls=False, min_snr=0.0)
    plain = verify(alg, [0.04, 0.02], 400, variance_reduction="none", **args)
    cv = verify(alg, [0.04, 0.02], 400, variance_reduction="quadratic", **args)
    for p, c in zip(plain.rows, cv.rows):
        se_cv = math.hypot(p.stderr, c.stderr)  # SE of mean(CV) is below this bound
        assert abs(p.error - c.error) <= 4.4 * se_cv, (p, c)
        assert c.variance_reduction > 20 and c.stderr < p.stderr / 4, c


def test_control_variates_keep_chunking_and_resuming_bit_identical(tmp_path):
    alg = DropoutAlgorithm.verification_default(width=4, n_points=6)
    args = dict(horizon=0.2, seed=2, progress=False, min_snr=0.0, chunk_size=20,
                variance_reduction="quadratic")
    first = verify(alg, [0.1, 0.05], 60, checkpoint=tmp_path, **args)
    again = verify(alg, [0.1, 0.05], 60, checkpoint=tmp_path, **args)  # read back from files
    fresh = verify(alg, [0.1, 0.05], 60, **args)
    assert [r.error for r in again.rows] == [r.error for r in first.rows] \
        == [r.error for r in fresh.rows]


def test_a_broken_separable_noise_contract_is_refused_by_name():
    class Broken(NoisyQuadraticGD):
        name = "broken"

        def gradient_with(self, x, noise):  # does not reproduce step(): 2σ instead of σ
            return x @ A.to(x) + 2 * SIGMA * noise

        def step(self, x, lr, generator):
            return x - lr * (x @ A.to(x) + SIGMA * self.draw_gradient_noise(
                x.shape[0], generator, dtype=x.dtype, device=x.device))

    with pytest.raises(ValueError, match=r"broken \(lr=0.1\): step_with\(x, lr, draw\(...\)\) "
                                         r"must reproduce step"):
        verify(Broken(), [0.1, 0.05], 10, horizon=0.2, progress=False)
    # without control variates the plug-in is not asked for the contract
    verify(Broken(), [0.1, 0.05], 10, horizon=0.2, progress=False, variance_reduction="none",
           min_snr=0.0)


def test_the_tangent_needs_brownian_noise_and_the_capability():
    assert isinstance(DropoutAlgorithm.verification_default(), SeparableNoise)
    alg = DropoutAlgorithm.verification_default(width=3, n_points=4)
    sampled = alg.sme(0.1, 1, noise="gaussian")
    with pytest.raises(ValueError, match="SAMPLED noise has no Brownian increments"):
        linearize_sde(sampled, EulerMaruyama(), alg.theta0, 0.0, 0.05, 2, quadratic=False)


def test_a_non_differentiable_test_function_gets_no_control_variate():
    delta = torch.randn(1, 5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    tangent = TangentPaths(torch.zeros(1, 2, dtype=F64), delta)
    cv = control_values({"sign": lambda x: torch.sign(x[:, 0]), "x": lambda x: x[:, 0]}, tangent)
    assert torch.equal(cv[0], torch.zeros_like(cv[0]))  # sign: zero gradient everywhere → 0
    torch.testing.assert_close(cv[1, 0], delta[0, :, 0])


class _LinearStep:
    """The body of a separable plug-in (GD on ½xᵀAx with Gaussian gradient noise)."""

    def initial_state(self, n_paths, *, dtype=None, device=None):
        return X0.to(dtype=dtype or F64).expand(n_paths, -1).clone()

    def draw(self, n_paths, lr, generator, *, dtype, device):
        return torch.randn(n_paths, 2, generator=generator, dtype=dtype, device=device)

    def step_with(self, x, lr, noise):
        return x - lr * (x @ A.to(x) + SIGMA * noise)

    def mean_step(self, x, lr):
        return x - lr * (x @ A.to(x))

    def sme(self, lr, order=1):
        raise NotImplementedError

    def test_functions(self):
        return TESTS


@pytest.mark.parametrize("separable_first", [True, False])
def test_separable_noise_mixes_into_an_algorithm_in_either_base_order(separable_first):
    bases = ((SeparableNoise, smetool.Algorithm) if separable_first
             else (smetool.Algorithm, SeparableNoise))
    body = {k: v for k, v in vars(_LinearStep).items() if callable(v)}
    algorithm = type("Mixed", bases, body)()
    x = algorithm.initial_state(5)
    # step(x, lr, g) is step_with(x, lr, draw(...)) draw for draw, whatever the base order
    stepped = algorithm.step(x, 0.1, torch.Generator().manual_seed(3))
    noise = algorithm.draw(5, 0.1, torch.Generator().manual_seed(3), dtype=F64, device=x.device)
    assert torch.equal(stepped, algorithm.step_with(x, 0.1, noise))


def test_control_values_are_the_exact_linear_and_quadratic_terms_for_any_test_function():
    """``CV = ∇g·M + ½ δᵀ∇²g δ − ½ tr(∇²g C)`` against hand-computed derivatives of
    ``g(x) = x₀² x₁ + sin x₂``, for a ``g`` that ``torch.func`` transforms and for the same ``g``
    written with an old-style ``autograd.Function`` (which it cannot: the row-by-row autograd
    fallback must give the same values)."""
    gen = torch.Generator().manual_seed(3)
    mean = torch.tensor([[0.7, -1.2, 0.4]], dtype=torch.float64)
    martingale = torch.randn(1, 5, 3, generator=gen, dtype=torch.float64)
    delta = torch.randn(1, 5, 3, generator=gen, dtype=torch.float64)
    A = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    covariance = (A @ A.T).unsqueeze(0)
    tangent = TangentPaths(mean, martingale, delta, covariance)

    def smooth(x):
        return x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 2])

    class Square(torch.autograd.Function):  # old style (no setup_context): torch.func refuses it
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            return 2 * x * grad_out

    def branching(x):
        return Square.apply(x[:, 0]) * x[:, 1] + torch.sin(x[:, 2])

    a, b, c = mean[0].tolist()
    grad = torch.tensor([2 * a * b, a * a, math.cos(c)], dtype=torch.float64)
    hess = torch.tensor([[2 * b, 2 * a, 0.0], [2 * a, 0.0, 0.0], [0.0, 0.0, -math.sin(c)]],
                        dtype=torch.float64)
    d = delta[0]
    expected = martingale[0] @ grad + 0.5 * ((d @ hess) * d).sum(1) \
        - 0.5 * (hess * covariance[0]).sum()
    with pytest.raises(RuntimeError):  # the fallback is really taken
        torch.func.hessian(lambda y: branching(y.unsqueeze(0))[0])(mean[0])
    values = control_values({"smooth": smooth, "branching": branching}, tangent)
    assert values.shape == (2, 1, 5)
    torch.testing.assert_close(values[0, 0], expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(values[1, 0], expected, rtol=1e-13, atol=1e-13)
