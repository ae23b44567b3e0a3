"""smetool against torchsde's fixed-step solvers on the same Brownian path.

Both libraries query one ``torchsde.BrownianInterval`` (float64) on the same dyadic grid, so the
increments are bit-identical and the schemes must agree to rounding: Euler–Maruyama with
``torchsde.sdeint(method="euler")`` for diagonal, general, scalar and additive noise, and Itô
Milstein with ``method="milstein"`` for diagonal and additive noise and for scalar noise whose
diffusion Jacobian is symmetric — paths and, for a parameterised neural SDE, gradients. The
torchsde module is passed to :func:`smetool.solve` directly (through the adapter) and, separately,
rewritten as a :class:`smetool.FunctionSDE`.

Where they disagree, smetool is right: for scalar noise with a non-symmetric Jacobian torchsde's
derivative-using Milstein computes ``(∂σ)ᵀσ`` instead of ``(∂σ)σ`` and converges at strong order
½ on the rotation problem (its ``grad_free`` option and smetool at order 1). These statements are
what docs/solvers.md says about torchsde.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchsde

from smetool import EulerMaruyama, FunctionSDE, Milstein, PlatenWeak2, SmallNoiseHeun, fit_order, solve
from smetool.exact import rotation_problem
from smetool.sde import TorchsdeAdapter

F64 = torch.float64
P, D, M = 64, 3, 2
T, DT = 1.0, 2.0**-5  # dyadic: both time grids are exact in binary
SAVE = [0.0, 0.25, 0.5, 1.0]


def _drift(t, y):
    return -y + 0.5 * torch.sin(y) * (1 + t)


def _diag(t, y):
    return 0.3 + 0.2 * torch.cos(y) + 0.1 * t


def _general(t, y):
    # (P, D, M): column j depends on the whole state (non-commutative).
    c1 = 0.3 + 0.1 * torch.tanh(y.sum(-1, keepdim=True)) * torch.ones_like(y)
    c2 = 0.2 * torch.sin(y.roll(1, dims=-1)) + 0.05 * t
    return torch.stack([c1, c2], dim=-1)


def _scalar(t, y):
    return (0.25 + 0.1 * y**2 / (1 + y**2)).unsqueeze(-1)  # torchsde: (P, D, 1)


class TorchsdeSDE(torch.nn.Module):
    sde_type = "ito"

    def __init__(self, noise_type, g):
        super().__init__()
        self.noise_type = noise_type
        self._g = g

    def f(self, t, y):
        return _drift(t, y)

    def g(self, t, y):
        return self._g(t, y)


CASES = {
    "diagonal": (_diag, D, lambda g: FunctionSDE(_drift, g, noise_kind="diagonal")),
    "general": (_general, M, lambda g: FunctionSDE(_drift, g, noise_kind="general")),
    "scalar": (_scalar, 1,
               lambda g: FunctionSDE(_drift, lambda t, y: g(t, y)[..., 0], noise_kind="scalar")),
}


def _run_both(noise, method_tsde, method_sme, device, seed=0):
    g, m, mirror = CASES[noise]
    y0 = torch.linspace(-1.0, 1.5, P * D, dtype=F64, device=device).reshape(P, D)
    bm = torchsde.BrownianInterval(0.0, T, size=(P, m), dtype=F64, device=device, entropy=seed)
    tsde = TorchsdeSDE(noise, g)
    ts = torch.tensor(SAVE, dtype=F64, device=device)
    with torch.no_grad() if method_tsde == "euler" else torch.enable_grad():
        ref = torchsde.sdeint(tsde, y0, ts, bm=bm, method=method_tsde, dt=DT)
    ref = ref.detach()
    ours_adapter = solve(tsde, y0, (0.0, T), dt=DT, method=method_sme, increments=bm, save_at=SAVE)
    ours_mirror = solve(mirror(g), y0, (0.0, T), dt=DT, method=method_sme, increments=bm,
                        save_at=SAVE)
    return ref, ours_adapter, ours_mirror


@pytest.mark.parametrize("noise", ["diagonal", "general", "scalar"])
def test_euler_maruyama_equals_torchsde_euler(noise, device):
    ref, a, b = _run_both(noise, "euler", EulerMaruyama(), device)
    assert a.xs.shape == ref.shape
    torch.testing.assert_close(a.xs, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(b.xs, ref, rtol=0, atol=1e-10)
    assert a.ts.tolist() == SAVE
    assert float((ref[-1] - ref[0]).abs().max()) > 0.1  # not trivially equal


@pytest.mark.parametrize("noise", ["diagonal", "scalar"])
def test_milstein_equals_torchsde_ito_milstein(noise, device):
    ref, a, b = _run_both(noise, "milstein", Milstein(), device)
    torch.testing.assert_close(a.xs, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(b.xs, ref, rtol=0, atol=1e-10)
    # Milstein's correction is visible at this tolerance: it differs from Euler on the same path.
    euler, _, _ = _run_both(noise, "euler", EulerMaruyama(), device)
    assert float((euler[-1] - ref[-1]).abs().max()) > 1e-4


def _additive_g(t, y):
    # Time-dependent, state-independent (torchsde's additive contract), (P, D, M).
    B = torch.tensor([[0.3, 0.0], [0.1, 0.2], [0.0, 0.4]], dtype=y.dtype, device=y.device)
    return (B * (1 + 0.5 * t)).expand(y.shape[0], D, M)


def test_additive_torchsde_noise_is_read_as_additive(device):
    """torchsde's "additive" is smetool's ADDITIVE (it was adapted as GENERAL, which Milstein
    refused with "does not support noise_kind='general'", a kind the user never declared)."""
    tsde = TorchsdeSDE("additive", _additive_g)
    adapted = TorchsdeAdapter(tsde)
    assert adapted.noise_kind.value == "additive"
    assert "TorchsdeAdapter(TorchsdeSDE, noise_kind='additive')" == repr(adapted)
    y0 = torch.linspace(-1.0, 1.0, P * D, dtype=F64, device=device).reshape(P, D)
    bm = torchsde.BrownianInterval(0.0, T, size=(P, M), dtype=F64, device=device, entropy=1)
    ts = torch.tensor(SAVE, dtype=F64, device=device)
    for method_tsde, method in (("euler", EulerMaruyama()), ("milstein", Milstein())):
        ref = torchsde.sdeint(tsde, y0, ts, bm=bm, method=method_tsde, dt=DT).detach()
        ours = solve(tsde, y0, (0.0, T), dt=DT, method=method, increments=bm, save_at=SAVE)
        torch.testing.assert_close(ours.xs, ref, rtol=0, atol=1e-10)
    # Platen's and Heun's additive step (weak order 2) accept it too.
    for method in (PlatenWeak2(), SmallNoiseHeun()):
        assert torch.isfinite(solve(tsde, y0, (0.0, T), dt=DT, method=method, generator=0).final).all()


class NeuralSDE(torch.nn.Module):
    """A parameterised, time-dependent diagonal-noise SDE in the torchsde style (neural drift)."""

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the module's initial weights; the paths use the Brownian object
        self.net = torch.nn.Sequential(torch.nn.Linear(D + 1, 8), torch.nn.Tanh(),
                                       torch.nn.Linear(8, D)).double()
        self.scale = torch.nn.Parameter(torch.tensor([0.3, 0.5, 0.2], dtype=F64))

    def f(self, t, y):
        tt = torch.full_like(y[:, :1], float(t))
        return self.net(torch.cat([y, tt], dim=1))

    def g(self, t, y):
        return self.scale * torch.sigmoid(y) * (1 + float(t))  # σ_i(x_i), time-dependent


@pytest.mark.parametrize("method_tsde, method", [("euler", EulerMaruyama()), ("milstein", Milstein())],
                         ids=["euler", "milstein"])
def test_parameter_gradients_equal_torchsde_backprop_through_the_solver(method_tsde, method, device):
    """Paths and gradients with respect to the module's parameters equal torchsde's (backprop
    through its solver, not the adjoint) on the same Brownian path."""
    sde = NeuralSDE().to(device)
    y0 = torch.linspace(-1.0, 1.0, 16 * D, dtype=F64, device=device).reshape(16, D)
    bm = torchsde.BrownianInterval(0.0, T, size=(16, D), dtype=F64, device=device, entropy=4)
    ts = torch.tensor([0.0, T], dtype=F64, device=device)
    ref = torchsde.sdeint(sde, y0, ts, bm=bm, method=method_tsde, dt=DT)[-1]
    ref_grads = torch.autograd.grad((ref**2).sum(), list(sde.parameters()))
    ours = solve(sde, y0, (0.0, T), dt=DT, method=method, increments=bm).final
    grads = torch.autograd.grad((ours**2).sum(), list(sde.parameters()))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert float(grads[-1].abs().min()) > 1e-3  # the diffusion parameters get a real gradient


# ---------------------------------------------------------------------------------------------
# Scalar noise whose diffusion Jacobian is not symmetric: torchsde's Milstein uses Jᵀσ


ROTATION_PROBLEM = rotation_problem(beta=1.0, beta_t=0.0, lam=0.2, lam_t=-0.4)


class RotationSDE(torch.nn.Module):
    """:func:`smetool.exact.rotation_problem` as a torchsde module (scalar noise, ``g`` (P, 2, 1))."""

    sde_type = "ito"
    noise_type = "scalar"

    def f(self, t, y):
        return ROTATION_PROBLEM.sde.drift(float(t), y)

    def g(self, t, y):
        return ROTATION_PROBLEM.sde.diffusion(float(t), y).unsqueeze(-1)


def test_milstein_on_a_non_symmetric_jacobian_differs_from_torchsde_by_the_transpose(device):
    """One step from x: smetool − torchsde = ½(ΔW² − h)(Jσ − Jᵀσ) = −β²(ΔW² − h) x for σ = βRx
    (Jσ = β²R²x = −β²x, Jᵀσ = β²RᵀRx = +β²x): torchsde's scalar Milstein applies the transposed
    Jacobian (a vector–Jacobian product)."""
    x = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=F64, device=device)
    h = 0.1
    bm = torchsde.BrownianInterval(0.0, h, size=(2, 1), dtype=F64, device=device, entropy=9)
    dW = bm(0.0, h)
    ts = torch.tensor([0.0, h], dtype=F64, device=device)
    ref = torchsde.sdeint(RotationSDE(), x, ts, bm=bm, method="milstein", dt=h)[-1].detach()
    ours = solve(ROTATION_PROBLEM.sde, x, (0.0, h), dt=h, method=Milstein(), increments=bm).final
    torch.testing.assert_close(ours - ref, -(dW**2 - h) * x, rtol=0, atol=1e-13)


def _strong_fit(run, P=2000, seed=7):
    bm = torchsde.BrownianInterval(0.0, T, size=(P, 1), dtype=F64, entropy=seed)
    exact = ROTATION_PROBLEM.solution(T, bm(0.0, T))
    x0 = ROTATION_PROBLEM.initial_state(P)
    hs, errs, ses = [], [], []
    for k in range(3, 8):
        with torch.no_grad():
            d = (run(x0, bm, 2.0**-k) - exact).norm(dim=1)
        hs.append(2.0**-k)
        errs.append(float(d.mean()))
        ses.append(float(d.std()) / math.sqrt(P))
    return fit_order(hs, errs, ses, confidence=0.99)


def test_strong_orders_on_the_rotation_problem_smetool_1_torchsde_half():
    """Strong errors E|Y_T − X_T| against the exact rotation on one BrownianInterval per run,
    h = 2^-3 … 2^-7, 2000 paths, 99 % intervals (lack-of-fit inflated; the levels share paths):
    smetool's Milstein and torchsde's grad_free Milstein contain 1 and exclude ½; torchsde's
    derivative-using Milstein contains ½ and excludes 1 (measured 0.95 [0.87, 1.03],
    0.96 [0.88, 1.04] and 0.48 [0.43, 0.53]; the seed is fixed, never tuned)."""
    ts = torch.tensor([0.0, T], dtype=F64)
    ours = _strong_fit(lambda x0, bm, h: solve(ROTATION_PROBLEM.sde, x0, (0.0, T), dt=h,
                                               method=Milstein(), increments=bm).final)
    theirs = _strong_fit(lambda x0, bm, h: torchsde.sdeint(RotationSDE(), x0, ts, bm=bm,
                                                            method="milstein", dt=h)[-1])
    grad_free = _strong_fit(lambda x0, bm, h: torchsde.sdeint(
        RotationSDE(), x0, ts, bm=bm, method="milstein", dt=h, options={"grad_free": True})[-1])
    for fit, inside, outside in ((ours, 1.0, 0.5), (grad_free, 1.0, 0.5), (theirs, 0.5, 1.0)):
        assert fit.contains(inside) and not fit.contains(outside), repr(fit)


def test_a_float32_brownian_object_cannot_drive_a_float64_state():
    bm = torchsde.BrownianInterval(0.0, T, size=(P, D), dtype=torch.float32, entropy=1)
    sde = FunctionSDE(_drift, _diag, noise_kind="diagonal")
    with pytest.raises(ValueError, match=r"`increments` must be at least as precise as the state "
                                         r"\(torch.float64\); the torchsde Brownian object returns "
                                         r"torch.float32\. Create it with dtype=torch.float64\."):
        solve(sde, torch.ones(P, D, dtype=F64), (0.0, T), dt=DT, increments=bm)
    bm64 = torchsde.BrownianInterval(0.0, T, size=(P, D), dtype=F64, entropy=1)
    y = solve(sde, torch.ones(P, D, dtype=torch.float32), (0.0, T), dt=DT, increments=bm64).final
    assert y.dtype == torch.float32  # rounding a more precise path to the state's dtype is fine


class OnlyProducts(torch.nn.Module):
    """A torchsde-style module that defines f_and_g and g_prod but no g."""

    sde_type = "ito"
    noise_type = "diagonal"

    def f(self, t, y):
        return -y

    def f_and_g(self, t, y):
        return -y, torch.ones_like(y)

    def g_prod(self, t, y, v):
        return v


def test_a_torchsde_module_without_g_is_told_which_attribute_is_missing():
    with pytest.raises(TypeError, match=r"`sde` looks like a torchsde SDE but lacks g: smetool "
                                        r"calls f\(t, y\) and g\(t, y\) and reads noise_type \(it "
                                        r"does not use f_and_g, g_prod or h\); got OnlyProducts "
                                        r"with f, f_and_g, g_prod, noise_type, sde_type\."):
        solve(OnlyProducts(), torch.ones(2, 1, dtype=F64), (0.0, 1.0), dt=0.5)


def test_brownian_path_reused_on_a_finer_grid_is_the_same_path(device):
    """Querying the BrownianInterval on dt and dt/4 gives one path: W_T agrees, EM converges."""
    bm = torchsde.BrownianInterval(0.0, T, size=(P, D), dtype=F64, device=device, entropy=3)
    coarse = sum(bm(k * DT, (k + 1) * DT) for k in range(round(T / DT)))
    fine = sum(bm(k * DT / 4, (k + 1) * DT / 4) for k in range(round(4 * T / DT)))
    torch.testing.assert_close(coarse, bm(0.0, T), rtol=0, atol=1e-12)
    torch.testing.assert_close(fine, bm(0.0, T), rtol=0, atol=1e-12)
