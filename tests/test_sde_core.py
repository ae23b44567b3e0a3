"""The SDE core at its boundary: every error message, non-finite handling, the Solution object,
consistency between noise kinds, and COVARIANCE versus SAMPLED noise (statistical, SE-based)."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchsde

from smetool import (
    EulerMaruyama,
    FunctionSDE,
    Milstein,
    NonFiniteError,
    PlatenWeak2,
    Solution,
    TorchsdeBrownian,
    UnsupportedError,
    brownian_bridge_split,
    psd_factor,
    solve,
)
from smetool.brownian import as_increments
from smetool.integrate import make_generator
from smetool.noise import NotPSDError, apply_diffusion, diffusion_matrix
from smetool.sde import SDE, TorchsdeAdapter, as_sde
from smetool.solvers import get_solver

F64 = torch.float64


def ou(kind="diagonal"):
    return FunctionSDE(lambda t, x: -x, lambda t, x: 0.5 * torch.ones_like(x), noise_kind=kind)


def x0(P=4, D=2, device="cpu"):
    return torch.ones(P, D, dtype=F64, device=device)


# ---------------------------------------------------------------------------------------------
# Construction errors


def test_bad_noise_kind_name_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"`noise_kind` must be one of diagonal, scalar, .*got 'diag'"):
        FunctionSDE(lambda t, x: x, lambda t, x: x, noise_kind="diag")


def test_function_sde_argument_errors():
    with pytest.raises(TypeError, match=r"`drift` must be callable"):
        FunctionSDE(1.0, lambda t, x: x)
    with pytest.raises(TypeError, match=r"`diffusion` must be callable .* noise_kind='general'"):
        FunctionSDE(lambda t, x: x, None, noise_kind="general")
    with pytest.raises(ValueError, match=r"`sample_noise` is required when noise_kind='sampled'"):
        FunctionSDE(lambda t, x: x, noise_kind="sampled")


def test_sde_without_diffusion_says_what_is_missing():
    class DriftOnly(SDE):
        def drift(self, t, x):
            return -x

    with pytest.raises(NotImplementedError, match=r"DriftOnly declares noise_kind='diagonal' but "
                                                  r"does not implement diffusion"):
        solve(DriftOnly(), x0(), (0.0, 1.0), dt=0.5, generator=0)


def test_as_sde_errors():
    with pytest.raises(TypeError, match=r"`sde` must be a smetool.SDE .* got int"):
        as_sde(3)

    class Strat:
        noise_type, sde_type = "diagonal", "stratonovich"
        f = g = staticmethod(lambda t, y: y)

    with pytest.raises(ValueError, match=r"`sde.sde_type` must be 'ito' .* got 'stratonovich'"):
        as_sde(Strat())

    class Odd:
        noise_type, sde_type = "weird", "ito"
        f = g = staticmethod(lambda t, y: y)

    with pytest.raises(ValueError, match=r"`sde.noise_type` must be one of diagonal, scalar, general, "
                                         r"additive; got 'weird'"):
        TorchsdeAdapter(Odd())


# ---------------------------------------------------------------------------------------------
# solve() argument errors


def test_diffusion_of_wrong_shape():
    bad = FunctionSDE(lambda t, x: -x, lambda t, x: torch.ones(x.shape[0], 3, dtype=x.dtype))
    with pytest.raises(ValueError, match=re.escape("diffusion(t, x) must have shape (4, 2) for "
                                                   "noise_kind='diagonal' with x of shape (4, 2); "
                                                   "got (4, 3).")):
        solve(bad, x0(), (0.0, 1.0), dt=0.5, generator=0)
    gen = FunctionSDE(lambda t, x: -x, lambda t, x: torch.ones(x.shape[0], 2, 3, dtype=x.dtype),
                      noise_kind="general", noise_dim=2)
    with pytest.raises(ValueError, match=re.escape("must have shape (4, 2, 2) for noise_kind="
                                                   "'general'")):
        solve(gen, x0(), (0.0, 1.0), dt=0.5, generator=0)
    cov = FunctionSDE(lambda t, x: -x, lambda t, x: torch.ones_like(x), noise_kind="covariance")
    with pytest.raises(ValueError, match=re.escape("must have shape (4, 2, 2) for noise_kind="
                                                   "'covariance'")):
        solve(cov, x0(), (0.0, 1.0), dt=0.5, generator=0)
    add = FunctionSDE(lambda t, x: -x, lambda t, x: torch.ones(3, 2, dtype=x.dtype),
                      noise_kind="additive")
    with pytest.raises(ValueError, match=re.escape("must have shape (2, M) for noise_kind='additive'")):
        solve(add, x0(), (0.0, 1.0), dt=0.5, generator=0)
    f32 = FunctionSDE(lambda t, x: -x, lambda t, x: torch.ones_like(x, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"must have the dtype and device of x \(torch.float64"):
        solve(f32, x0(), (0.0, 1.0), dt=0.5, generator=0)


def test_drift_of_wrong_shape():
    bad = FunctionSDE(lambda t, x: x[:, :1], lambda t, x: torch.ones_like(x))
    with pytest.raises(ValueError, match=re.escape("drift(t, x) must have the shape of x (4, 2); "
                                                   "got (4, 1).")):
        solve(bad, x0(), (0.0, 1.0), dt=0.5, generator=0)


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), float("inf"), "0.1"])
def test_non_positive_or_non_finite_dt(dt):
    with pytest.raises(ValueError, match=r"`dt` must be a positive finite number; got"):
        solve(ou(), x0(), (0.0, 1.0), dt=dt, generator=0)


def test_dt_must_divide_the_span():
    with pytest.raises(ValueError, match=r"`dt` must divide the time span t1 - t0 = 1 into whole "
                                         r"steps; got dt=0.3 \(3.33333 steps\)"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.3, generator=0)
    with pytest.raises(ValueError, match=r"`dt` must divide the time span"):
        solve(ou(), x0(), (0.0, 1.0), dt=2.0, generator=0)  # zero whole steps


@pytest.mark.parametrize("span", [(1.0, 1.0), (1.0, 0.0), (0.0, float("inf"))])
def test_bad_time_span(span):
    with pytest.raises(ValueError, match=r"`t_span` must be \(t0, t1\) with finite t0 < t1"):
        solve(ou(), x0(), span, dt=0.5, generator=0)


def test_save_at_errors():
    with pytest.raises(ValueError, match=r"`save_at` times must be grid points t0 \+ k·dt in "
                                         r"\[t0, t1\] \(dt=0.25\); got 0.3"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.25, save_at=[0.0, 0.3], generator=0)
    with pytest.raises(ValueError, match=r"`save_at` times must be grid points .* got 1.25"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.25, save_at=[1.25], generator=0)
    with pytest.raises(ValueError, match=r"`save_at` must be strictly increasing; got \[0.5, 0.25\]"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.25, save_at=[0.5, 0.25], generator=0)
    with pytest.raises(ValueError, match=r"`save_at` must be strictly increasing"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.25, save_at=torch.tensor([0.5, 0.5]), generator=0)
    with pytest.raises(ValueError, match=r"`save_at` must hold at least one time"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.25, save_at=[], generator=0)


def test_x0_errors():
    bad = x0()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"`x0` must be finite; got NaN/inf in 1 path\(s\), e.g. path 2"):
        solve(ou(), bad, (0.0, 1.0), dt=0.5, generator=0)
    with pytest.raises(ValueError, match=re.escape("`x0` has shape (2,); give shape (paths, dim) or "
                                                   "pass n_paths=.")):
        solve(ou(), torch.ones(2, dtype=F64), (0.0, 1.0), dt=0.5, generator=0)
    with pytest.raises(ValueError, match=r"`n_paths` must be a positive integer; got 0"):
        solve(ou(), torch.ones(2, dtype=F64), (0.0, 1.0), dt=0.5, generator=0, n_paths=0)
    with pytest.raises(ValueError, match=r"`n_paths` \(3\) does not match x0's 4 paths"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, generator=0, n_paths=3)
    with pytest.raises(ValueError, match=r"`x0` must have shape \(paths, dim\); got \(1, 4, 2\)"):
        solve(ou(), x0().unsqueeze(0), (0.0, 1.0), dt=0.5, generator=0)
    with pytest.raises(ValueError, match=r"`x0` must have a floating dtype; got torch.int64"):
        solve(ou(), torch.ones(4, 2, dtype=torch.long), (0.0, 1.0), dt=0.5, generator=0)
    with pytest.raises(TypeError, match=r"`x0` must be a torch.Tensor .* got list"):
        solve(ou(), [[1.0, 1.0]], (0.0, 1.0), dt=0.5, generator=0)


def test_one_dimensional_x0_is_shared_by_n_paths():
    sol = solve(ou(), torch.tensor([1.0, 2.0], dtype=F64), (0.0, 1.0), dt=0.5, generator=0,
                n_paths=5)
    assert sol.xs.shape == (2, 5, 2)
    assert torch.equal(sol.xs[0], torch.tensor([[1.0, 2.0]] * 5, dtype=F64))
    assert sol.xs[1].std(dim=0).min() > 0  # paths are independent, not copies


def test_method_errors():
    with pytest.raises(ValueError, match=r"`method` must be one of euler, milstein, platen.*; got 'rk4'"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, method="rk4", generator=0)
    with pytest.raises(TypeError, match=r"`method` must be a solver instance such as EulerMaruyama\(\); "
                                        r"got the class"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, method=EulerMaruyama, generator=0)
    with pytest.raises(TypeError, match=r"`method` must be a Solver or a solver name; got 3"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, method=3, generator=0)
    assert isinstance(get_solver("platen"), PlatenWeak2)


def test_increments_errors():
    with pytest.raises(ValueError, match=r"`increments` must be one of gaussian, rademacher, "
                                         r"three_point or a torchsde Brownian object; got 'sobol'"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, increments="sobol", generator=0)
    with pytest.raises(TypeError, match=r"`increments` must be an Increments object, a name .* got int"):
        as_increments(3)
    with pytest.raises(TypeError, match=r"`bm` must be a torchsde Brownian object \(callable\)"):
        TorchsdeBrownian(3)
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(4, 3), dtype=F64, entropy=0)
    with pytest.raises(ValueError, match=re.escape("the torchsde Brownian object returned increments "
                                                   "of shape (4, 3); the SDE needs (4, 2)")):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, increments=bm)


def test_on_nonfinite_must_be_raise_or_continue():
    with pytest.raises(ValueError, match=r"`on_nonfinite` must be 'raise' or 'continue'; got 'ignore'"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, generator=0, on_nonfinite="ignore")


@pytest.mark.parametrize("bad", [-1, "seed", 1.5, True])
def test_bad_generator(bad):
    with pytest.raises(ValueError, match=r"`generator` must be a torch.Generator, a non-negative int "
                                         r"seed or None; got"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, generator=bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generator_on_another_device():
    with pytest.raises(ValueError, match=r"`generator` must live on the device of x0"):
        solve(ou(), x0(device="cuda"), (0.0, 1.0), dt=0.5, generator=torch.Generator())


# ---------------------------------------------------------------------------------------------
# Solver / noise / increments combinations refused before the loop


def general_sde():
    return FunctionSDE(lambda t, x: -x,
                       lambda t, x: torch.ones(x.shape[0], x.shape[1], 3, dtype=x.dtype) * 0.1,
                       noise_kind="general")


def sampled_sde():
    return FunctionSDE(lambda t, x: -x, noise_kind="sampled",
                       sample_noise=lambda t, x, g: torch.randn(x.shape, generator=g, dtype=x.dtype))


def test_milstein_refuses_general_noise():
    with pytest.raises(UnsupportedError, match=r"Milstein\(\) does not support noise_kind='general' "
                                               r"\(it supports additive, diagonal, scalar\); use "
                                               r"EulerMaruyama\(\) \(strong order 1/2\) or PlatenWeak2"):
        solve(general_sde(), x0(), (0.0, 1.0), dt=0.5, method=Milstein(), generator=0)


@pytest.mark.parametrize("inc", ["rademacher", "three_point"])
def test_milstein_needs_gaussian_increments(inc):
    with pytest.raises(UnsupportedError, match=r"Milstein\(\) is a strong scheme and needs Gaussian "
                                               r"increments; got .*Increments\(\)"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, method=Milstein(), increments=inc, generator=0)


def test_platen_refuses_rademacher_increments():
    with pytest.raises(UnsupportedError, match=r"PlatenWeak2\(\) needs increments matching 5 Gaussian "
                                               r"moments to keep weak order 2.0; "
                                               r"RademacherIncrements\(\) matches 3"):
        solve(ou(), x0(), (0.0, 1.0), dt=0.5, method=PlatenWeak2(), increments="rademacher",
              generator=0)


def test_platen_refuses_sampled_noise():
    with pytest.raises(UnsupportedError, match=r"PlatenWeak2\(\) does not support noise_kind='sampled'"):
        solve(sampled_sde(), x0(), (0.0, 1.0), dt=0.5, method=PlatenWeak2(), generator=0)


def test_torchsde_brownian_cannot_drive_sampled_noise():
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(4, 2), dtype=F64, entropy=0)
    with pytest.raises(ValueError, match=r"noise_kind='sampled' draws its own noise from the "
                                         r"generator; a torchsde Brownian object cannot drive it"):
        solve(sampled_sde(), x0(), (0.0, 1.0), dt=0.5, increments=bm)


def test_non_psd_covariance_is_refused():
    indefinite = FunctionSDE(
        lambda t, x: -x,
        lambda t, x: torch.tensor([[1.0, 0.0], [0.0, -0.5]], dtype=x.dtype).expand(x.shape[0], 2, 2),
        noise_kind="covariance")
    with pytest.raises(NotPSDError, match=r"`sigma` must be positive semi-definite; matrix 0 of the "
                                          r"batch has eigenvalue -0.5 \(largest 1, tolerance"):
        solve(indefinite, x0(), (0.0, 1.0), dt=0.5, generator=0)
    with pytest.raises(ValueError, match=r"`sigma` must be symmetric; got a relative asymmetry of 0.5"):
        psd_factor(torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64))
    with pytest.raises(ValueError, match=r"`sigma` must have shape \(\.\.\., D, D\); got \(2, 3\)"):
        psd_factor(torch.ones(2, 3, dtype=F64))


def test_brownian_bridge_split_rejects_bad_n_sub():
    g = torch.Generator().manual_seed(0)
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match=r"`n_sub` must be a positive integer; got"):
            brownian_bridge_split(torch.zeros(3, 2, dtype=F64), 1.0, bad, g)
    one = brownian_bridge_split(torch.ones(3, 2, dtype=F64), 1.0, 1, g)
    assert torch.equal(one, torch.ones(1, 3, 2, dtype=F64))


# ---------------------------------------------------------------------------------------------
# Non-finite paths


def _blowup_reference(starts, h, n):
    """First step (1-based) at which EM for dx = x² dt leaves the floats, per start; -1 if never."""
    out, paths = [], []
    for x in starts:
        first, xs = -1, [x]
        for k in range(n):
            x = x + (x * x) * h + 0.0
            xs.append(x)
            if first < 0 and not math.isfinite(x):
                first = k + 1
        out.append(first)
        paths.append(xs)
    return out, paths


BLOWUP = FunctionSDE(lambda t, x: x * x, lambda t, x: torch.zeros_like(x))
STARTS = [-0.5, 4.0, 1.0, 2.5, 0.05]  # blow up at steps -, 11, 15, 12, -


def test_nonfinite_error_carries_the_partial_solution(device):
    h, n = 0.25, 40
    first, ref_paths = _blowup_reference(STARTS, h, n)
    assert first[1] > 0 and first[0] == first[4] == -1  # the problem blows up some paths only
    x = torch.tensor(STARTS, dtype=F64, device=device).unsqueeze(1)
    save = [0.0, 1.0, 2.0, 3.0, 10.0]
    # solve() looks for non-finite states once per window of steps (8 on the CPU, 32 on a GPU)
    # and replays the window that has one, so it stops at the end of the window holding the first
    # blow-up (path 1, step 11) and reports every path that blew up in it with its exact step.
    window = 8 if device.type == "cpu" else 32
    stop = min(n, -(-first[1] // window) * window)
    expected = [f if 0 < f <= stop else -1 for f in first]
    bad = [i for i, f in enumerate(expected) if f > 0]
    pattern = (rf"{len(bad)} of 5 paths became non-finite; the first at step 11 \(t = 2.75\)\. "
               rf"Paths: {', '.join(map(str, bad))}\. The states saved before that are in the "
               r"exception's \.solution")
    with pytest.raises(NonFiniteError, match=pattern) as info:
        solve(BLOWUP, x, (0.0, n * h), dt=h, save_at=save, generator=0)
    sol = info.value.solution
    assert isinstance(sol, Solution)
    assert sol.first_nonfinite_step.cpu().tolist() == expected
    assert sol.n_steps == stop
    # Rows saved up to the stop hold the exact states (NaN where a path had blown up); the rest
    # are NaN.
    for row, t in enumerate(save):
        k = round(t / h)
        if k <= stop:
            expect = torch.tensor([p[k] for p in ref_paths], dtype=F64)
            torch.testing.assert_close(sol.xs[row, :, 0].cpu(), expect, rtol=0, atol=0,
                                       equal_nan=True)
        else:
            assert torch.isnan(sol.xs[row]).all()


def test_on_nonfinite_continue_reports_every_path(device):
    h, n = 0.25, 40
    first, ref_paths = _blowup_reference(STARTS, h, n)
    x = torch.tensor(STARTS, dtype=F64, device=device).unsqueeze(1)
    sol = solve(BLOWUP, x, (0.0, n * h), dt=h, generator=0, on_nonfinite="continue")
    assert sol.first_nonfinite_step.tolist() == first
    assert sol.n_nonfinite == sum(f > 0 for f in first)
    assert sol.n_steps == n
    final = torch.tensor([p[-1] for p in ref_paths], dtype=F64)
    ok = torch.tensor([f < 0 for f in first])
    torch.testing.assert_close(sol.final[:, 0].cpu()[ok], final[ok], rtol=0, atol=0)
    assert not torch.isfinite(sol.final[:, 0].cpu()[~ok]).any()
    assert sol.to_dict()["n_nonfinite"] == 3
    finite = solve(ou(), x0(device=device), (0.0, 1.0), dt=0.5, generator=0)
    assert finite.first_nonfinite_step is None and finite.n_nonfinite == 0


# ---------------------------------------------------------------------------------------------
# The Solution object and seeds


def test_solution_api_and_seed_recording(device):
    sol = solve(ou(), x0(device=device), (0.0, 1.0), dt=0.25, save_at=[0.0, 0.5, 1.0])
    assert isinstance(sol.seed, int)
    again = solve(ou(), x0(device=device), (0.0, 1.0), dt=0.25, save_at=[0.0, 0.5, 1.0],
                  generator=sol.seed)
    assert torch.equal(sol.xs, again.xs)  # the recorded seed repeats the run
    assert sol.ts.tolist() == [0.0, 0.5, 1.0] and sol.ts.device == sol.xs.device
    assert torch.equal(sol.final, sol.xs[-1])
    d = sol.to_dict()
    assert sol.seconds > 0 and d.pop("seconds") == sol.seconds
    assert d.pop("path_steps_per_second") == pytest.approx(4 * 4 / sol.seconds)
    assert d == {"ts": [0.0, 0.5, 1.0], "paths": 4, "dim": 2, "n_steps": 4, "dt": 0.25,
                 "method": "euler", "seed": sol.seed, "n_nonfinite": 0}
    assert repr(sol) == ("Solution(method='euler', paths=4, dim=2, saves=3, n_steps=4, dt=0.25, "
                         "n_nonfinite=0)")
    with pytest.raises(Exception):
        sol.dt = 1.0  # frozen
    g = torch.Generator(device=device).manual_seed(3)
    assert solve(ou(), x0(device=device), (0.0, 1.0), dt=0.25, generator=g).seed is None
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(4, 2), dtype=F64, entropy=0, device=device)
    assert solve(ou(), x0(device=device), (0.0, 1.0), dt=0.25, increments=bm,
                 generator=5).seed is None


def test_make_generator_never_touches_global_state():
    before = torch.random.get_rng_state()
    gen, seed = make_generator(None, torch.device("cpu"))
    solve(ou(), x0(), (0.0, 1.0), dt=0.25, generator=gen)
    assert torch.equal(before, torch.random.get_rng_state())
    assert isinstance(seed, int)


def test_save_at_excluding_t0_and_tensor_times():
    full = solve(ou(), x0(), (0.0, 1.0), dt=0.125, save_at=[k / 8 for k in range(9)], generator=1)
    part = solve(ou(), x0(), (0.0, 1.0), dt=0.125, save_at=torch.tensor([0.25, 0.875]), generator=1)
    assert torch.equal(part.xs, full.xs[[2, 7]])
    shifted = solve(ou(), x0(), (1.0, 2.0), dt=0.125, save_at=[1.5], generator=1)
    assert shifted.xs.shape == (1, 4, 2) and shifted.ts.tolist() == [1.5]


# ---------------------------------------------------------------------------------------------
# Noise kinds agree with each other (same seed ⇒ same increments ⇒ same numbers)


def test_noise_kinds_agree_on_the_same_increments(device):
    P, D = 6, 3
    x = torch.linspace(-1, 1, P * D, dtype=F64, device=device).reshape(P, D)
    diag = FunctionSDE(lambda t, x: -x, lambda t, x: 0.3 + 0.1 * x**2)
    general = FunctionSDE(lambda t, x: -x, lambda t, x: torch.diag_embed(0.3 + 0.1 * x**2),
                          noise_kind="general")
    a = solve(diag, x, (0.0, 1.0), dt=0.125, generator=7).final
    b = solve(general, x, (0.0, 1.0), dt=0.125, generator=7).final
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)

    scalar = FunctionSDE(lambda t, x: -x, lambda t, x: 0.3 + 0.1 * x**2, noise_kind="scalar")
    column = FunctionSDE(lambda t, x: -x, lambda t, x: (0.3 + 0.1 * x**2).unsqueeze(-1),
                         noise_kind="general")
    a = solve(scalar, x, (0.0, 1.0), dt=0.125, generator=7).final
    b = solve(column, x, (0.0, 1.0), dt=0.125, generator=7).final
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)

    S = torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.3, 0.1], [0.0, 0.1, 0.4]], dtype=F64, device=device)
    root = psd_factor(S)
    cov = FunctionSDE(lambda t, x: -x, lambda t, x: S.expand(x.shape[0], D, D),
                      noise_kind="covariance")
    additive = FunctionSDE(lambda t, x: -x, lambda t, x: root, noise_kind="additive")
    a = solve(cov, x, (0.0, 1.0), dt=0.125, generator=7).final
    b = solve(additive, x, (0.0, 1.0), dt=0.125, generator=7).final
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # Platen draws its two-point variables for matrix noise but not for additive noise (15.1.4),
    # so compare COVARIANCE with the same root given as GENERAL noise.
    root_general = FunctionSDE(lambda t, x: -x, lambda t, x: root.expand(x.shape[0], D, D),
                               noise_kind="general")
    a = solve(cov, x, (0.0, 1.0), dt=0.125, generator=7, method=PlatenWeak2()).final
    b = solve(root_general, x, (0.0, 1.0), dt=0.125, generator=7, method=PlatenWeak2()).final
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_apply_diffusion_matches_the_matrix_product():
    g = torch.Generator().manual_seed(0)
    P, D, M = 5, 3, 4
    dW = torch.randn(P, M, generator=g, dtype=F64)
    for kind, shape in (("general", (P, D, M)), ("additive", (D, M)), ("additive", (P, D, M))):
        sde = FunctionSDE(lambda t, x: x, lambda t, x: x, noise_kind=kind)
        b = torch.randn(shape, generator=g, dtype=F64)
        mat = diffusion_matrix(sde, b, P)
        torch.testing.assert_close(apply_diffusion(sde, b, dW),
                                   torch.einsum("pdm,pm->pd", mat, dW))
    sampled = sampled_sde()
    with pytest.raises(ValueError, match=r"noise_kind='sampled' has no diffusion matrix"):
        diffusion_matrix(sampled, torch.zeros(1), P)


# ---------------------------------------------------------------------------------------------
# Milstein


def test_milstein_state_independent_diffusion(device):
    """σ that does not depend on x (no autograd graph) used to crash the diagonal branch."""
    x = x0(device=device)
    for kind in ("diagonal", "scalar"):
        a = solve(ou(kind), x, (0.0, 1.0), dt=0.25, method=Milstein(), generator=0).final
        b = solve(ou(kind), x, (0.0, 1.0), dt=0.25, method=EulerMaruyama(), generator=0).final
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)  # ∂σ = 0: Milstein is EM


@pytest.mark.parametrize("kind", ["diagonal", "scalar"])
def test_milstein_derivative_hook_equals_autograd(kind):
    x = torch.linspace(-1, 1, 12, dtype=F64).reshape(4, 3)
    sig = lambda t, x: 0.2 + 0.3 * torch.sin(x) * (1 + t)  # noqa: E731
    if kind == "diagonal":
        deriv = lambda t, x: 0.3 * torch.cos(x) * (1 + t)  # noqa: E731  ∂σ_i/∂x_i
    else:
        deriv = lambda t, x: 0.3 * torch.cos(x) * (1 + t) * sig(t, x)  # noqa: E731  (∂σ) σ
    plain = FunctionSDE(lambda t, x: -x, sig, noise_kind=kind)
    hooked = FunctionSDE(lambda t, x: -x, sig, noise_kind=kind, diffusion_derivative=deriv)
    a = solve(plain, x, (0.0, 1.0), dt=0.125, method=Milstein(), generator=3).final
    b = solve(hooked, x, (0.0, 1.0), dt=0.125, method=Milstein(), generator=3).final
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_milstein_additive_is_euler():
    add = FunctionSDE(lambda t, x: -x, lambda t, x: torch.eye(2, dtype=x.dtype) * 0.4,
                      noise_kind="additive")
    a = solve(add, x0(), (0.0, 1.0), dt=0.25, method=Milstein(), generator=2).final
    b = solve(add, x0(), (0.0, 1.0), dt=0.25, generator=2).final
    assert torch.equal(a, b)


def test_solver_describe():
    d = PlatenWeak2().describe()
    assert d["weak_order"] == 2.0 and d["strong_order"] is None and "general" in d["noise_kinds"]
    assert Milstein().describe()["strong_order"] == 1.0


# ---------------------------------------------------------------------------------------------
# COVARIANCE vs SAMPLED: the same law two ways


def _factor(x):
    """J(x) (P, 2, 3): the state-dependent noise factor, Σ(x) = J Jᵀ (rank 2, from 3 sources)."""
    x1, x2 = x[:, 0], x[:, 1]
    one = torch.ones_like(x1)
    return torch.stack([
        torch.stack([0.6 + 0.3 * torch.sin(x1), 0.2 * one, 0.1 * x2], -1),
        torch.stack([0.1 * one, 0.5 + 0.1 * x1**2 / (1 + x1**2), 0.2 * torch.cos(x2)], -1),
    ], 1)


def test_covariance_and_sampled_noise_give_the_same_moments(device):
    """EM with Σ(x) (factored by the solver) vs a sampler ζ = J(x) z of the same covariance.

    Independent runs of 10⁴ paths; each of the 5 statistics (means and second moments) must agree within 5
    combined standard errors (false-failure probability < 5 · 6e-7).
    """
    drift = lambda t, x: -x + 0.2 * torch.flip(x, dims=[1])  # noqa: E731
    cov = FunctionSDE(drift, lambda t, x: _factor(x) @ _factor(x).transpose(1, 2),
                      noise_kind="covariance")

    def sample(t, x, gen):
        z = torch.randn(x.shape[0], 3, 1, generator=gen, dtype=x.dtype, device=x.device)
        return (_factor(x) @ z)[..., 0]

    sampled = FunctionSDE(drift, noise_kind="sampled", sample_noise=sample)
    P = 10_000
    x = torch.tensor([[0.5, -0.3]], dtype=F64, device=device).repeat(P, 1)
    stats = []
    for sde, seed in ((cov, 11), (sampled, 12)):
        y = solve(sde, x, (0.0, 1.0), dt=0.25, generator=seed).final
        f = torch.stack([y[:, 0], y[:, 1], y[:, 0] ** 2, y[:, 0] * y[:, 1], y[:, 1] ** 2], 1)
        stats.append((f.mean(0), f.std(0) / math.sqrt(P)))
    (m1, s1), (m2, s2) = stats
    z = ((m1 - m2).abs() / torch.sqrt(s1**2 + s2**2)).cpu()
    assert (z < 5).all(), z
    # The comparison resolves differences down to about 5 · √2 · SE.
    assert float(stats[0][1].max()) < 0.01
