"""Invariants of the SDE core (hypothesis), plus the laws of the increment sources (SE-based)."""

from __future__ import annotations

import math

import pytest
import torch
import torchsde
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smetool import (
    FunctionSDE,
    PlatenWeak2,
    brownian_bridge_split,
    psd_factor,
    solve,
)
from smetool.brownian import GaussianIncrements, RademacherIncrements, ThreePointIncrements
from smetool.noise import NotPSDError
from smetool.solvers.platen import two_point_levy

F64 = torch.float64
SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

KINDS = ["diagonal", "scalar", "general", "additive", "covariance"]


def make_sde(kind: str, D: int, M: int, zero: bool = False, seed: int = 0) -> FunctionSDE:
    """A nonlinear time-dependent SDE with a diffusion of ``kind`` (identically 0 if ``zero``)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=F64) / math.sqrt(D)
    c = torch.randn(D, generator=g, dtype=F64)
    Bm = torch.randn(D, M, generator=g, dtype=F64) * 0.3
    scale = 0.0 if zero else 1.0

    def drift(t, x):
        return torch.tanh(x @ A.to(x).T) - 0.5 * x + c.to(x) * math.cos(t)

    def diffusion(t, x):
        if kind in ("diagonal", "scalar"):
            return scale * (0.2 + 0.1 * torch.sin(x))
        if kind == "additive":
            return scale * Bm.to(x)
        if kind == "general":
            return scale * (Bm.to(x) * (1 + 0.1 * torch.tanh(x)).unsqueeze(-1))
        J = scale * (Bm.to(x) * (1 + 0.1 * x**2).unsqueeze(-1))  # covariance Σ = J Jᵀ
        return J @ J.transpose(-1, -2)

    return FunctionSDE(drift, diffusion, noise_kind=kind)


problem = st.fixed_dictionaries({
    "kind": st.sampled_from(KINDS),
    "P": st.integers(1, 5),
    "D": st.integers(1, 4),
    "M": st.integers(1, 3),
    "n": st.integers(1, 6),
    "k": st.integers(0, 6),  # dt = 2^-k
    "t0": st.sampled_from([0.0, 0.5, -1.25]),
    "increments": st.sampled_from(["gaussian", "rademacher", "three_point"]),
    "seed": st.integers(0, 2**31 - 1),
})


def _x0(p, dtype=F64, device="cpu"):
    g = torch.Generator().manual_seed(p["seed"] % 1000)
    return torch.randn(p["P"], p["D"], generator=g, dtype=F64).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------
# Solver invariants


@SETTINGS
@given(p=problem)
def test_zero_diffusion_em_is_explicit_euler(p):
    sde = make_sde(p["kind"], p["D"], p["M"], zero=True)
    x0 = _x0(p)
    dt = 2.0 ** -p["k"]
    sol = solve(sde, x0, (p["t0"], p["t0"] + p["n"] * dt), dt=dt, generator=p["seed"],
                increments=p["increments"])
    x = x0.clone()
    for k in range(p["n"]):
        x = x + sde.drift(p["t0"] + k * dt, x) * dt
    torch.testing.assert_close(sol.final, x, rtol=0, atol=0)


@SETTINGS
@given(p=problem)
def test_zero_diffusion_platen_is_heun(p):
    """Without noise Platen's scheme is the explicit trapezoidal rule (Heun), with a at t + h."""
    sde = make_sde(p["kind"], p["D"], p["M"], zero=True)
    inc = "three_point" if p["increments"] == "rademacher" else p["increments"]
    x0 = _x0(p)
    dt = 2.0 ** -p["k"]
    sol = solve(sde, x0, (p["t0"], p["t0"] + p["n"] * dt), dt=dt, generator=p["seed"],
                increments=inc, method=PlatenWeak2())
    x = x0.clone()
    for k in range(p["n"]):
        t = p["t0"] + k * dt
        a0 = sde.drift(t, x)
        x = x + 0.5 * (sde.drift(t + dt, x + a0 * dt) + a0) * dt
    torch.testing.assert_close(sol.final, x, rtol=1e-15, atol=1e-15)


@SETTINGS
@given(p=problem, method=st.sampled_from(["euler", "platen"]))
def test_same_seed_same_paths_different_seed_different_paths(p, method):
    sde = make_sde(p["kind"], p["D"], p["M"])
    inc = "three_point" if (method == "platen" and p["increments"] == "rademacher") else p["increments"]
    dt = 2.0 ** -p["k"]
    span = (p["t0"], p["t0"] + p["n"] * dt)
    x0 = _x0(p)
    a = solve(sde, x0, span, dt=dt, generator=p["seed"], increments=inc, method=method)
    b = solve(sde, x0, span, dt=dt, generator=p["seed"], increments=inc, method=method)
    assert torch.equal(a.xs, b.xs)
    gen = torch.Generator().manual_seed(p["seed"])
    c = solve(sde, x0, span, dt=dt, generator=gen, increments=inc, method=method)
    assert torch.equal(a.xs, c.xs)  # a seed and a generator seeded with it are the same
    d = solve(sde, x0, span, dt=dt, generator=p["seed"] + 1, increments=inc, method=method)
    # Discrete increments can coincide by chance for tiny problems; Gaussian ones cannot.
    if inc == "gaussian":
        assert not torch.equal(a.final, d.final)


def test_different_seeds_differ_for_discrete_increments():
    sde = make_sde("general", 3, 2)
    x0 = torch.zeros(200, 3, dtype=F64)
    for inc in ("rademacher", "three_point"):
        a = solve(sde, x0, (0.0, 1.0), dt=0.25, generator=1, increments=inc).final
        b = solve(sde, x0, (0.0, 1.0), dt=0.25, generator=2, increments=inc).final
        assert not torch.equal(a, b)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=problem, dtype=st.sampled_from([torch.float32, torch.float64]),
       method=st.sampled_from(["euler", "platen"]),
       save=st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True))
def test_shapes_and_dtypes_follow_x0(p, dtype, method, save, device):
    sde = make_sde(p["kind"], p["D"], p["M"])
    inc = "three_point" if (method == "platen" and p["increments"] == "rademacher") else p["increments"]
    dt = 2.0 ** -p["k"]
    idx = sorted(s for s in save if s <= p["n"]) or [p["n"]]
    save_at = [p["t0"] + i * dt for i in idx]
    x0 = _x0(p, dtype=dtype, device=device)
    sol = solve(sde, x0, (p["t0"], p["t0"] + p["n"] * dt), dt=dt, generator=p["seed"],
                increments=inc, method=method, save_at=save_at)
    assert sol.xs.shape == (len(idx), p["P"], p["D"])
    assert sol.xs.dtype == dtype and sol.ts.dtype == dtype
    assert sol.xs.device.type == sol.ts.device.type == torch.device(device).type
    assert sol.n_steps == p["n"] and sol.dt == dt
    assert torch.isfinite(sol.xs).all()
    if idx[0] == 0:
        assert torch.equal(sol.xs[0], x0)


# ---------------------------------------------------------------------------------------------
# psd_factor


@SETTINGS
@given(D=st.integers(1, 6), rank=st.integers(0, 6), batch=st.integers(1, 3),
       seed=st.integers(0, 10_000), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_psd_factor_squares_to_sigma(D, rank, batch, seed, dtype):
    """F Fᵀ = Σ and F = Fᵀ for PSD Σ of any rank, singular ones included, in both dtypes."""
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(batch, D, min(rank, D), generator=g, dtype=F64) * 3.0
    sigma = (J @ J.transpose(1, 2)).to(dtype)
    F = psd_factor(sigma)
    assert F.dtype == dtype and F.shape == sigma.shape
    scale = max(float(sigma.abs().max()), 1e-300)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(F @ F.transpose(1, 2), sigma, rtol=0, atol=100 * D * eps * scale)
    torch.testing.assert_close(F, F.transpose(1, 2), rtol=0, atol=100 * D * eps * math.sqrt(scale))


def test_psd_factor_float32_singular():
    """Round-off makes eigenvalues of a singular float32 Σ as low as −5e-7 λ_max; a fixed 1e-8
    relative tolerance refused 96 % of rank-3 8×8 matrices. The default tolerance scales with eps."""
    g = torch.Generator().manual_seed(1)
    J = torch.randn(200, 8, 3, generator=g)
    sigma = J @ J.transpose(1, 2)
    F = psd_factor(sigma)
    torch.testing.assert_close(F @ F.transpose(1, 2), sigma, rtol=0, atol=1e-4 * float(sigma.abs().max()))
    with pytest.raises(NotPSDError):  # an explicit tolerance is still honoured
        psd_factor(sigma, rtol=1e-12)


@SETTINGS
@given(D=st.integers(2, 6), seed=st.integers(0, 10_000), depth=st.floats(1e-3, 1.0),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_psd_factor_rejects_clearly_indefinite(D, seed, depth, dtype):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    evals = torch.rand(D, generator=g, dtype=F64) + 0.5
    evals[0] = -depth * float(evals.max())  # one eigenvalue clearly below zero
    sigma = ((Q * evals) @ Q.T).to(dtype)
    sigma = 0.5 * (sigma + sigma.T)
    with pytest.raises(NotPSDError, match=r"`sigma` must be positive semi-definite"):
        psd_factor(sigma)


# ---------------------------------------------------------------------------------------------
# Brownian bridge and torchsde Brownian objects


@SETTINGS
@given(P=st.integers(1, 6), M=st.integers(1, 3), n_sub=st.integers(1, 9),
       h=st.floats(1e-4, 10.0), seed=st.integers(0, 10_000))
def test_brownian_bridge_split_sums_to_the_coarse_increment(P, M, n_sub, h, seed):
    g = torch.Generator().manual_seed(seed)
    dW = torch.randn(P, M, generator=g, dtype=F64) * math.sqrt(h)
    sub = brownian_bridge_split(dW, h, n_sub, g)
    assert sub.shape == (n_sub, P, M) and sub.dtype == F64
    torch.testing.assert_close(sub.sum(0), dW, rtol=0, atol=1e-13 * max(1.0, math.sqrt(h)) * n_sub)


@pytest.mark.parametrize("n_sub", [2, 5])
def test_brownian_bridge_split_has_the_brownian_law(n_sub):
    """Unconditionally the sub-increments are i.i.d. N(0, h/n); given the sum, Var = h/n (1 − 1/n).

    N = 2·10⁵ samples; each variance/covariance must be within 5 SE (SE of a sample variance of a
    Gaussian: σ²√(2/N); of a covariance of independent ones: σ²/√N).
    """
    N, h = 200_000, 0.7
    g = torch.Generator().manual_seed(42)
    dW = torch.randn(N, 1, generator=g, dtype=F64) * math.sqrt(h)
    sub = brownian_bridge_split(dW, h, n_sub, g)[:, :, 0]  # (n_sub, N)
    var = h / n_sub
    emp = torch.cov(sub)
    for i in range(n_sub):
        assert abs(float(emp[i, i]) - var) < 5 * var * math.sqrt(2 / N)
        for j in range(i):
            assert abs(float(emp[i, j])) < 5 * var / math.sqrt(N)
    bridge = brownian_bridge_split(torch.zeros(N, 1, dtype=F64), h, n_sub, g)[:, :, 0]
    cvar = var * (1 - 1 / n_sub)
    for i in range(n_sub):
        assert abs(float(bridge[i].var()) - cvar) < 5 * cvar * math.sqrt(2 / N)
    assert abs(float(bridge.mean())) < 5 * math.sqrt(cvar / N)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0), c=st.floats(0.0, 1.0),
       entropy=st.integers(0, 10_000))
def test_torchsde_brownian_interval_splits_consistently(a, b, c, entropy):
    s, t, u = sorted((a, b, c))
    if not (s < t < u):
        return
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(3, 2), dtype=F64, entropy=entropy)
    whole = bm(s, u)
    torch.testing.assert_close(bm(s, t) + bm(t, u), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(bm(s, u), whole, rtol=0, atol=0)  # queries are repeatable


# ---------------------------------------------------------------------------------------------
# Increment laws and the two-point variables


@pytest.mark.parametrize("source", [GaussianIncrements(), RademacherIncrements(),
                                    ThreePointIncrements()], ids=lambda s: s.name)
def test_increment_moments(source, device):
    """E ΔW = 0, E ΔW² = h, E ΔW³ = 0 and, up to the matched order, E ΔW⁴ = 3h² (within 5 SE)."""
    N, h = 400_000, 0.3
    g = torch.Generator(device=device).manual_seed(7)
    dW = source.sample(0.2, 0.2 + h, (N, 1), g, F64, device)[:, 0]
    assert dW.dtype == F64 and dW.device.type == torch.device(device).type
    z = dW / math.sqrt(h)
    targets = {1: 0.0, 2: 1.0, 3: 0.0, 4: 3.0 if source.matched_moments >= 4 else 1.0}
    for k, m in targets.items():
        x = z**k
        se = float(x.std()) / math.sqrt(N)
        assert abs(float(x.mean()) - m) < 5 * max(se, 1e-12), (k, float(x.mean()))
    if source.name == "rademacher":
        assert torch.equal(z.abs(), torch.ones_like(z))
    if source.name == "three_point":
        assert (((z.abs() - math.sqrt(3)).abs() < 1e-12) | (z == 0)).all()


def test_two_point_levy_structure_and_law():
    P, m, h = 100_000, 3, 0.25
    g = torch.Generator().manual_seed(9)
    V = two_point_levy(P, m, h, g, F64, torch.device("cpu"))
    assert V.shape == (P, m, m)
    eye = torch.eye(m, dtype=F64)
    torch.testing.assert_close(V + V.transpose(1, 2), -2 * h * eye.expand_as(V), rtol=0, atol=0)
    lower = V[:, [1, 2, 2], [0, 0, 1]] / h
    assert torch.equal(lower.abs(), torch.ones_like(lower))
    # ±h with probability ½ each, independently: means within 5 SE (SE = 1/√P).
    assert (lower.mean(0).abs() < 5 / math.sqrt(P)).all()
    assert abs(float((lower[:, 0] * lower[:, 1]).mean())) < 5 / math.sqrt(P)
