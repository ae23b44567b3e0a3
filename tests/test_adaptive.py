"""RMSprop and Adam plug-ins (Malladi, Lyu, Panigrahi & Arora 2022): the scaling rule keeps the SDE
constants, the discrete steps equal the textbook algorithms (``torch.optim.RMSprop`` for RMSprop)
under the ``u = v/σ²`` reparametrisation, the SDEs' pieces fit together, and the Monte-Carlo weak
order of each SDE (95 % CI containing 1)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smetool import verify
from smetool.algorithms import Adam, RMSprop, sde_constants, sqrt_scaling_rule
from smetool.algorithms.registry import plugins
from smetool.algorithms.sgd import SGDLeastSquares


@settings(max_examples=60, deadline=None)
@given(kappa=st.floats(0.05, 20.0), lr=st.floats(1e-4, 1.0), b1=st.floats(0.5, 0.999),
       b2=st.floats(0.9, 0.9999), eps=st.floats(1e-8, 1.0), sigma=st.floats(0.1, 100.0))
def test_square_root_rule_keeps_the_sde_constants(kappa, lr, b1, b2, eps, sigma):
    if kappa * (1 - b1) > 1 or kappa * (1 - b2) > 1:
        return
    before = sde_constants(lr=lr, betas=(b1, b2), eps=eps, noise_scale=sigma)
    new = sqrt_scaling_rule(kappa, lr=lr, betas=(b1, b2), eps=eps)
    # a batch κ times larger divides the gradient-noise scale by √κ
    after = sde_constants(lr=new["lr"], betas=new["betas"], eps=new["eps"],
                          noise_scale=sigma / math.sqrt(kappa))
    assert math.isclose(after["sigma0"], before["sigma0"], rel_tol=1e-12)
    assert math.isclose(after["eps0"], before["eps0"], rel_tol=1e-12)
    for a, b in zip(after["c"], before["c"]):
        assert math.isclose(a, b, rel_tol=1e-6)
    assert math.isclose(after["tau"], kappa * before["tau"], rel_tol=1e-12)


def test_scaling_rule_errors():
    with pytest.raises(ValueError, match="the rule needs kappa · \\(1 − beta\\) ≤ 1"):
        sqrt_scaling_rule(20, lr=0.1, betas=0.9, eps=1e-8)
    with pytest.raises(ValueError, match="`kappa` must be a positive finite number; got 0"):
        sqrt_scaling_rule(0, lr=0.1, betas=0.9, eps=1e-8)
    with pytest.raises(ValueError, match="every decay rate in `betas` must be in \\[0, 1\\); got 1.0"):
        sde_constants(lr=0.1, betas=(0.9, 1.0), eps=1e-8, noise_scale=1.0)


@pytest.mark.parametrize("algo", [RMSprop.default(), Adam.default()], ids=["rmsprop", "adam"])
def test_hyperparameters_round_trip_to_the_sde_constants(algo):
    tau = 1 / 32
    hp = algo.hyperparameters(tau)
    betas = hp.get("betas", hp.get("beta"))
    const = sde_constants(lr=hp["lr"], betas=betas, eps=hp["eps"], noise_scale=hp["noise_scale"])
    assert math.isclose(const["sigma0"], algo.sigma0) and math.isclose(const["eps0"], algo.eps0)
    assert math.isclose(const["tau"], tau)
    expected_c = (algo.c,) if isinstance(algo, RMSprop) else (algo.c1, algo.c2)
    for a, b in zip(const["c"], expected_c):
        assert math.isclose(a, b, rel_tol=1e-12)


def _noisy_gradients(algo, x, tau, gen):
    """The oracle's gradient ``g = ∇f + σ F z`` drawn exactly as the plug-in draws it."""
    sigma = algo.sigma0 / math.sqrt(tau)
    z = torch.randn(x.shape[0], algo.base.n_points, generator=gen, dtype=x.dtype)
    return algo.base.gradient(x) + sigma * algo.base.noise_factor_matvec(x, z)


def test_rmsprop_step_is_torch_optim_rmsprop():
    algo = RMSprop.default(sigma0=0.5, eps0=0.3, c=2.0)
    tau, steps, P = 1 / 16, 12, 5
    hp = algo.hyperparameters(tau)
    z = algo.initial_state(P)
    gen = torch.Generator().manual_seed(11)
    for _ in range(steps):
        z = algo.step(z, tau, gen)

    x = torch.nn.Parameter(algo.initial_state(P)[:, :2].clone())
    opt = torch.optim.RMSprop([x], lr=hp["lr"], alpha=hp["beta"], eps=hp["eps"])
    opt.state[x]["step"] = torch.tensor(0.0)
    opt.state[x]["square_avg"] = (hp["noise_scale"] ** 2 * algo.u0).expand(P, 2).clone()
    ref_gen = torch.Generator().manual_seed(11)
    for _ in range(steps):
        x.grad = _noisy_gradients(algo, x.detach(), tau, ref_gen)
        opt.step()
    torch.testing.assert_close(z[:, :2], x.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z[:, 2:] * hp["noise_scale"] ** 2, opt.state[x]["square_avg"],
                               rtol=1e-12, atol=1e-12)


def test_adam_step_is_textbook_adam_without_bias_correction():
    algo = Adam.default(sigma0=0.5, eps0=0.3, c1=3.0, c2=1.5, m0=[0.1, -0.2])
    tau, steps, P = 1 / 16, 12, 5
    hp = algo.hyperparameters(tau)
    (b1, b2), sigma = hp["betas"], hp["noise_scale"]
    z = algo.initial_state(P)
    gen = torch.Generator().manual_seed(12)
    for _ in range(steps):
        z = algo.step(z, tau, gen)

    x = algo.initial_state(P)[:, :2].clone()
    m = algo.m0.expand(P, 2).clone()
    v = (sigma**2 * algo.u0).expand(P, 2).clone()
    ref_gen = torch.Generator().manual_seed(12)
    for _ in range(steps):
        g = _noisy_gradients(algo, x, tau, ref_gen)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - hp["lr"] * m / (v.sqrt() + hp["eps"])
    torch.testing.assert_close(z[:, :2], x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z[:, 2:4], m, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z[:, 4:] * sigma**2, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algo", [RMSprop.default(), Adam.default()], ids=["rmsprop", "adam"])
def test_sde_pieces(algo):
    gen = torch.Generator().manual_seed(0)
    z = algo.initial_state(4)
    z = algo.step(z, 1 / 16, gen)
    sde = algo.sme(1 / 16)
    D, M = algo.dim, algo.base.n_points
    sigma = sde.diffusion(0.0, z)
    assert sigma.shape == (4, algo.n_blocks * D, M)
    assert sde.drift(0.0, z).shape == z.shape
    dW = torch.randn(4, M, generator=gen, dtype=z.dtype)
    torch.testing.assert_close(sde.diffusion_product(0.0, z, dW), (sigma @ dW.unsqueeze(-1))[..., 0])
    x, u = z[:, :D], z[:, -D:]
    P = algo.preconditioner(u)
    noisy_block = sigma[:, :D] if isinstance(algo, RMSprop) else sigma[:, D:2 * D]
    scale = (algo.sigma0 / P).unsqueeze(-1) if isinstance(algo, RMSprop) else algo.sigma0 * algo.c1
    cov = noisy_block @ noisy_block.transpose(1, 2)
    # the noise block has covariance (scale²) Σ, with Σ the base's gradient covariance
    Sigma = algo.base.noise_covariance(x)
    expected = scale * Sigma * (scale.transpose(1, 2) if isinstance(algo, RMSprop) else scale)
    torch.testing.assert_close(cov, expected)
    assert bool((sigma[:, -D:] == 0).all())  # u has no noise
    torch.testing.assert_close(sde.drift(0.0, z)[:, -D:],
                               (algo.c if isinstance(algo, RMSprop) else algo.c2)
                               * (torch.diagonal(Sigma, dim1=1, dim2=2) - u))


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_verify_default_run_passes_with_power_and_rejects_its_negative_control(name):
    """``smetool verify rmsprop|adam`` (seed 0, the defaults): every test function passes the
    series test (no O(1) term in the weak error, its O(τ) term resolved), and the SDE whose
    second moment forgets the noise is failed by at least one test function. Order 1 in τ = η²:
    symmetric noise has no third moment, so the O(η) term of the general bound cancels."""
    spec = plugins()[name]
    algo = spec.build(dtype=torch.float64, device="cpu")
    result = verify(algo, spec.lrs, horizon=spec.horizon, n_paths=spec.n_paths,
                    steps_per_lr=spec.steps_per_lr, method=spec.method, seed=0, progress=False)
    assert result.verdict.value == "pass", result.table()
    assert all(v.passed for v in result.verdicts.values()), result.table()
    (control,) = result.controls.values()
    assert control.rejected, result.table()
    # the discrete side carried control variates: reduced variance on every row
    assert all(row.variance_reduction > 10 for row in result.rows), result.table()


@pytest.mark.parametrize("cls", [RMSprop, Adam])
def test_enumerated_mean_step_agrees_with_sampled_steps(cls):
    """The exact mean step (a sum over 64 sign patterns) against 200,000 sampled steps at a
    state away from the start; 5 SE per coordinate: false failure < 6e-7 each."""
    algo = cls.default(noise="rademacher")
    assert algo.has_exact_mean()
    z = algo.initial_state(1)
    z[:, :algo.dim] += torch.tensor([0.3, -0.7], dtype=z.dtype)
    lr, P = 1 / 16, 200_000
    steps = algo.step(z.expand(P, -1).clone(), lr, torch.Generator().manual_seed(11))
    mean = algo.mean_step(z, lr)[0]
    cov = algo.step_covariance(z, lr)[0]
    se = steps.std(dim=0) / P**0.5
    assert ((steps.mean(dim=0) - mean).abs() <= 5 * se + 1e-12).all()
    sample_cov = torch.cov(steps.T)
    # the sampled covariance within 5 of its own standard errors (fourth moments)
    centred = steps - steps.mean(dim=0)
    prods = centred.unsqueeze(2) * centred.unsqueeze(1)
    cov_se = prods.std(dim=0) / P**0.5
    assert ((sample_cov - cov).abs() <= 5 * cov_se + 1e-12).all()


def test_gaussian_noise_runs_without_discrete_control_variates():
    algo = RMSprop.default(noise="gaussian")
    assert not algo.has_exact_mean()
    with pytest.raises(ValueError, match="needs Rademacher noise"):
        algo.mean_step(algo.initial_state(1), 1 / 16)
    result = verify(algo, [1 / 8, 1 / 16], 200, horizon=1.0, seed=0, progress=False,
                    controls=False)
    assert all(row.variance_reduction < 10 for row in result.rows)  # the SME side's only


def test_validation():
    base = SGDLeastSquares.default()
    with pytest.raises(TypeError, match="RMSprop: `base` must be a FiniteSumSGD"):
        RMSprop(object())
    with pytest.raises(ValueError,
                       match="RMSprop: `noise` must be one of gaussian, rademacher, three_point; "
                             "got 'skewed'"):
        RMSprop(base, noise="skewed")
    with pytest.raises(ValueError, match="RMSprop: `u0` must be a finite, non-negative tensor"):
        RMSprop(base, u0=[-1.0, 1.0])
    with pytest.raises(ValueError, match="Adam: `sigma0` must be a positive finite number; got 0"):
        Adam(base, sigma0=0)
    with pytest.raises(ValueError, match="Adam: `m0` must be a finite tensor of shape \\(2,\\)"):
        Adam(base, m0=[1.0])
    rms = RMSprop(base, c=4.0)
    with pytest.raises(ValueError, match="must satisfy c · lr < 1 .* got lr=0.25 with c=4"):
        rms.step(rms.initial_state(2), 0.25, torch.Generator())
    with pytest.raises(ValueError, match=r"the state must have shape \(paths, 4\); got \(2, 6\)"):
        rms.step(torch.zeros(2, 6, dtype=torch.float64), 0.1, torch.Generator())
    with pytest.raises(ValueError, match="RMSpropSME: `order` must be 1"):
        rms.sme(0.1, order=2)
    with pytest.raises(ValueError, match="AdamSME: `order` must be 1"):
        Adam(base).sme(0.1, order=2)
