"""smetool reproduces torchsde's fixed-step solvers on the same Brownian path.

Both libraries query one ``torchsde.BrownianInterval`` (float64) on the same dyadic grid, so the
increments are bit-identical and the schemes must agree to rounding: Euler–Maruyama with
``torchsde.sdeint(method="euler")`` for diagonal, general and scalar noise, and Itô Milstein with
``method="milstein"`` for diagonal (and scalar) noise. The torchsde module is passed to
:func:`smetool.solve` directly (through the adapter) and, separately, rewritten as a
:class:`smetool.FunctionSDE`.
"""

from __future__ import annotations

import pytest
import torch
import torchsde

from smetool import EulerMaruyama, FunctionSDE, Milstein, solve
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


def test_additive_torchsde_noise_is_read_as_general(device):
    B = torch.tensor([[0.3, 0.0], [0.1, 0.2], [0.0, 0.4]], dtype=F64, device=device)
    tsde = TorchsdeSDE("additive", lambda t, y: B.expand(y.shape[0], D, M))
    adapted = TorchsdeAdapter(tsde)
    assert adapted.noise_kind.value == "general"
    assert "TorchsdeAdapter(TorchsdeSDE, noise_kind='general')" == repr(adapted)
    y0 = torch.zeros(P, D, dtype=F64, device=device)
    bm = torchsde.BrownianInterval(0.0, T, size=(P, M), dtype=F64, device=device, entropy=1)
    ref = torchsde.sdeint(tsde, y0, torch.tensor([0.0, T], dtype=F64, device=device), bm=bm,
                          method="euler", dt=DT)
    ours = solve(tsde, y0, (0.0, T), dt=DT, increments=bm)
    torch.testing.assert_close(ours.xs, ref, rtol=0, atol=1e-10)


def test_brownian_path_reused_on_a_finer_grid_is_the_same_path(device):
    """Querying the BrownianInterval on dt and dt/4 gives one path: W_T agrees, EM converges."""
    bm = torchsde.BrownianInterval(0.0, T, size=(P, D), dtype=F64, device=device, entropy=3)
    coarse = sum(bm(k * DT, (k + 1) * DT) for k in range(round(T / DT)))
    fine = sum(bm(k * DT / 4, (k + 1) * DT / 4) for k in range(round(4 * T / DT)))
    torch.testing.assert_close(coarse, bm(0.0, T), rtol=0, atol=1e-12)
    torch.testing.assert_close(fine, bm(0.0, T), rtol=0, atol=1e-12)
