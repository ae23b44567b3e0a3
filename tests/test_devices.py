"""Devices, precision and memory: the same problem in every dtype, device-aware chunks, what a
result records, kernels compiled or eager, and the CUDA checks (skipped without a device)."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import smetool
from smetool.algorithms.registry import plugins
from smetool.device import (
    PeakMemory,
    device_fingerprint,
    device_info,
    exact_matmul,
    format_bytes,
    measure_bytes_per_path,
)
from smetool.kernels import Kernel, compiled_kernels, compiling
from smetool.models.dropout_kernels import mean_gradient
from smetool.montecarlo import SDEProducer, run_monte_carlo
from smetool.montecarlo.engine import plan_chunk_size
from smetool.montecarlo.producers import producer_device
from smetool.solvers import EulerMaruyama, PlatenWeak2

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
cuda = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]


# ----------------------------------------------------------------------------- one problem per dtype
@pytest.mark.parametrize("name", sorted(plugins()))
def test_every_plugin_starts_float32_from_the_float64_point_rounded(name):
    spec = plugins()[name]
    x32 = spec.build(dtype=torch.float32).initial_state(1)
    x64 = spec.build(dtype=F64).initial_state(1)
    assert x32.dtype == torch.float32 and x64.dtype == F64
    # Drawn or set in float64 and rounded once; a state computed from θ0 (RMSprop's and Adam's
    # warm-start u0) may differ by the float32 rounding of that computation.
    tol = 4 * torch.finfo(torch.float32).eps * x64.abs().clamp(min=1.0)
    assert bool(((x32.double() - x64).abs() <= tol).all())


def _means(alg, dtype):
    r = smetool.verify(alg, (0.04, 0.02), 400, horizon=0.2, steps_per_lr=4, controls=False,
                       seed=5, dtype=dtype, progress=False)
    t = r.weak_errors
    return torch.stack([t.approx_means, t.reference_means]), torch.stack(
        [t.approx_stderrs, t.reference_stderrs])


def test_float32_and_float64_verify_the_same_problem():
    build = smetool.DropoutAlgorithm.verification_default
    m32, s32 = _means(build(dtype=torch.float32), torch.float32)
    m64, s64 = _means(build(), F64)
    z = (m32 - m64).abs() / torch.hypot(s32, s64)
    # The two runs draw other numbers (float32 and float64 generators), so they are independent
    # samples of the same expectations: 16 comparisons at 4.5 SE, false-failure probability
    # 16 · 6.8e-6 ≈ 1e-4.
    assert float(z.max()) < 4.5, z
    # Negative control: the same statistic between two *different* problems (θ0 of seed 1, as
    # the float32 run was before the fix drew its own θ0) must be far out.
    other, _ = _means(build(seed=1), F64)
    assert float(((other - m64).abs() / torch.hypot(s64, s64)).max()) > 4.5


# ----------------------------------------------------------------------------- device facts
def test_device_info_and_fingerprint_on_the_cpu():
    info = device_info("cpu")
    assert info["type"] == "cpu" and info["torch"] == str(torch.__version__)
    assert {"name", "cuda", "fp32_precision", "tf32_matmul"} <= set(info)
    fp = device_fingerprint("cpu")
    assert fp == {"device": "cpu", "gpu": None, "torch": str(torch.__version__), "cuda": None}
    assert format_bytes(3 * 2**20) == "3 MB" and format_bytes(100) == "100 B"


def test_exact_matmul_turns_tf32_off_and_restores_nested_settings():
    matmul = torch.backends.cuda.matmul
    saved = matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        with exact_matmul():
            with exact_matmul():
                assert matmul.fp32_precision == "ieee"
                assert device_info("cpu")["tf32_matmul"] is False
            assert matmul.fp32_precision == "ieee"  # the outer block still holds it
        assert matmul.fp32_precision == "tf32" and device_info("cpu")["tf32_matmul"] is True
    finally:
        matmul.fp32_precision = saved


def test_peak_memory_counts_live_bytes_and_bytes_per_path_is_exact():
    with PeakMemory() as mem:
        a = torch.ones(1000, dtype=F64)
        b = a * 2.0
        del a
        c = b.view(10, 100) + 1.0  # a view costs nothing, c 8000 more
    assert mem.peak == 16_000 and mem.live == 16_000
    del b, c
    # ones (P, 500) and its double alive together: 2 · 500 · 8 bytes per path, the shared
    # (path-independent) tensor cancels in the difference.
    shared = torch.zeros(10)
    per_path = measure_bytes_per_path(lambda n: torch.ones(n, 500, dtype=F64) * 2.0 + shared.sum())
    assert per_path == 8_000


# ----------------------------------------------------------------------------- chunk planning
def test_chunk_plan_fits_then_falls_to_a_power_of_two_then_refuses():
    cpu = torch.device("cpu")

    def plan(budget, chunk=None, cap=None, device=cpu):
        return plan_chunk_size(chunk, 10_000, device=device, memory_budget=budget,
                               bytes_per_path=lambda: 1_000, cap=cap, what="the probe")

    assert plan(10**9) == 10_000  # everything fits: one chunk
    assert plan(10**9, cap=4_096) == 4_096
    assert plan(3_000_000) == 2_048  # 3,000 paths fit: the largest power of two below
    with pytest.raises(ValueError, match=r"the probe needs ≈ 1e\+03 B of memory per path"):
        plan(500)
    # An explicit chunk on the CPU is the caller's word (not measured); elsewhere it is checked.
    assert plan_chunk_size(9_000, 10_000, device=cpu, memory_budget=10,
                           bytes_per_path=lambda: 1 / 0, cap=None) == 9_000
    meta = torch.device("meta")
    assert plan(10**9, chunk=9_000, device=meta) == 9_000
    with pytest.raises(ValueError, match="`chunk_size` 9000 does not fit.*pass chunk_size ≤ 3000"):
        plan(3_000_000, chunk=9_000, device=meta)


def test_a_faulty_probe_leaves_the_error_to_the_first_chunk():
    def bad(n, gen):
        return torch.zeros(2, n)  # 2-D: the first real chunk reports it with its own path count

    with pytest.raises(ValueError, match="with P = 50 paths"):
        run_monte_carlo(bad, {"x": lambda x: x[:, 0]}, 50, seed=0, progress=False)


def test_memory_bound_run_uses_a_power_of_two_chunk_and_records_the_device(tmp_path):
    sde = smetool.FunctionSDE(lambda t, x: -x, lambda t, x: 0.2 * x)
    prod = SDEProducer(sde, torch.ones(1, dtype=F64), (0.0, 1.0), dt=0.25)
    tests = {"x": lambda x: x[:, 0]}
    r = run_monte_carlo(prod, tests, 5_000, seed=0, progress=False, memory_budget=2**17)
    assert r.chunk_size < 5_000 and r.chunk_size & (r.chunk_size - 1) == 0
    assert r.device["type"] == "cpu" and r.device["tf32_matmul"] is False
    assert r.to_dict()["device"]["torch"] == str(torch.__version__)
    # A resumed run keeps the chunk size it started with, whatever the memory says now.
    ckpt = tmp_path / "ck"
    first = run_monte_carlo(prod, tests, 5_000, seed=0, progress=False, memory_budget=2**17,
                            checkpoint=ckpt)
    again = run_monte_carlo(prod, tests, 5_000, seed=0, progress=False, checkpoint=ckpt)
    assert again.chunk_size == first.chunk_size and torch.equal(again.means, first.means)


def test_a_checkpoint_of_another_device_is_refused(tmp_path):
    sde = smetool.FunctionSDE(lambda t, x: -x, lambda t, x: 0.2 * x)
    prod = SDEProducer(sde, torch.ones(1, dtype=F64), (0.0, 1.0), dt=0.25)
    kwargs = dict(seed=0, chunk_size=100, progress=False, checkpoint=tmp_path)
    run_monte_carlo(prod, {"x": lambda x: x[:, 0]}, 300, **kwargs)
    path = tmp_path / "run_monte_carlo.pt"
    state = torch.load(path, weights_only=True)
    state["fingerprint"].update(device="cuda", gpu="NVIDIA H200", cuda="12.8")
    torch.save(state, path)
    with pytest.raises(ValueError, match="device: checkpoint 'cuda' vs now 'cpu'"):
        run_monte_carlo(prod, {"x": lambda x: x[:, 0]}, 300, **kwargs)


def test_the_producer_decides_the_device():
    sde = smetool.FunctionSDE(lambda t, x: -x, lambda t, x: 0.2 * x)
    prod = SDEProducer(sde, torch.ones(1, dtype=F64), (0.0, 1.0), dt=0.5)
    assert producer_device(prod) == torch.device("cpu")
    assert producer_device(lambda n, g: None) is None
    opts = smetool.MonteCarloOptions(10)
    assert opts.device is None and opts.where == torch.device("cpu")
    assert opts.with_device(None, torch.device("meta")).device == torch.device("meta")
    assert opts.replace(device="cpu").with_device(torch.device("meta")).device.type == "cpu"
    assert not opts.compiles(10**6) and opts.replace(compile=True).compiles(2)
    with pytest.raises(TypeError, match="`compile` must be True, False or None"):
        smetool.MonteCarloOptions(10, compile="yes")


def test_platen_on_a_wide_dropout_factor_is_refused_before_anything_runs():
    wide = smetool.DropoutAlgorithm.verification_default(width=64)
    # 4 M² D numbers per path: M = 2080, D = 192, float64 → 26.6 GB.
    assert PlatenWeak2().step_memory(smetool.NoiseKind.GENERAL, 192, 2080, 8) == 4 * 2080**2 * 192 * 8
    with pytest.raises(ValueError, match=r"method 'platen' needs ≥ 24\.8 GB per path.*'heun'"):
        smetool.verify(wide, (0.04, 0.02), 100, horizon=0.04, method="platen",
                       memory_budget=2**30, progress=False)
    assert EulerMaruyama().step_memory(smetool.NoiseKind.GENERAL, 192, 2080, 8) == 0


def test_verify_records_the_device():
    alg = smetool.DropoutAlgorithm.verification_default(width=4)
    r = smetool.verify(alg, (0.04, 0.02), 50, horizon=0.04, steps_per_lr=4, controls=False,
                       progress=False)
    info = r.settings["device_info"]
    assert r.settings["device"] == "cpu" and info == r.weak_errors.device
    assert info["tf32_matmul"] is False and info["fp32_precision"]["cuda_matmul"] == "ieee"
    assert json.loads(json.dumps(r.to_dict()))["settings"]["device_info"]["type"] == "cpu"


# ----------------------------------------------------------------------------- kernels
def _axpy(x, y):
    return torch.tanh(x) * y + x


AXPY = Kernel(_axpy)


def test_kernels_are_eager_unless_switched_on_and_pickle_by_name():
    x = torch.linspace(-1, 1, 7, dtype=F64)
    assert not compiling() and torch.equal(AXPY(x, x), _axpy(x, x))
    with compiled_kernels(True):
        assert compiling()
        with compiled_kernels(False):
            assert not compiling()
    assert not compiling()
    assert pickle.loads(pickle.dumps(mean_gradient)) is mean_gradient


def test_euler_increment_is_drift_times_h_plus_the_noise():
    alg = smetool.DropoutAlgorithm.verification_default()
    sme = alg.sme(0.02, 1)
    gen = torch.Generator().manual_seed(0)
    x = alg.initial_state(6) + 0.1 * torch.randn(6, alg.problem.n_params, generator=gen, dtype=F64)
    dW = torch.randn(6, sme.noise_dim, generator=gen, dtype=F64) * 0.1
    fused = sme.euler_increment(0.0, x, 0.01, dW)
    F = alg.problem.noise_factor(x)  # the explicit factor: an independent reference
    ref = 0.01 * sme.drift(0.0, x) + math.sqrt(0.02) * torch.einsum("pdm,pm->pd", F, dW)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-14)
    sme2 = alg.sme(0.02, 2)  # order 2: drift and noise apart, the same sum
    ref2 = 0.01 * sme2.drift(0.0, x) + sme2.diffusion_product(0.0, x, dW)
    torch.testing.assert_close(sme2.euler_increment(0.0, x, 0.01, dW), ref2, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_compiled_dropout_kernels_agree_with_eager_to_round_off():
    # About a minute of compilation on a laptop core (the reason compile is off on the CPU).
    alg = smetool.DropoutAlgorithm.verification_default()
    kwargs = dict(horizon=0.04, steps_per_lr=4, controls=False, seed=3, progress=False)
    for order in (1, 2):
        eager = smetool.verify(alg, (0.04, 0.02), 64, order=order, **kwargs)
        compiled = smetool.verify(alg, (0.04, 0.02), 64, order=order, compile=True, **kwargs)
        e, c = eager.weak_errors, compiled.weak_errors
        torch.testing.assert_close(c.approx_means, e.approx_means, rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(c.reference_means, e.reference_means, rtol=1e-11, atol=1e-13)


# ----------------------------------------------------------------------------- benchmarks
@pytest.mark.parametrize("script", ["bench_gbm_gpu.py", "bench_dropout.py"])
def test_benchmark_runs_in_its_fast_mode(tmp_path, script):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "b.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--fast",
                           "--device", "cpu", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["device"]["type"] == "cpu" and all(v > 0 for v in record["ratios"].values())
    if script == "bench_gbm_gpu.py":
        means = [r["mean"] for r in record["rows"]]
        # E X_T of EM: 0.1 (1 + 1.5/256)^256 = 0.4462; 1,024 paths, σ = 0.01: SE ≈ 1e-4.
        assert all(abs(m - 0.1 * (1 + 1.5 / 256) ** 256) < 2e-3 for m in means)


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_verify_repeats_bit_for_bit_and_records_the_gpu(dtype):
    alg = smetool.DropoutAlgorithm.verification_default(dtype=dtype, device="cuda")
    kwargs = dict(horizon=0.2, steps_per_lr=4, seed=1, dtype=dtype, device="cuda", progress=False)
    matmul = torch.backends.cuda.matmul
    saved = matmul.fp32_precision
    matmul.fp32_precision = "tf32"  # the chunks must run without it all the same
    try:
        a = smetool.verify(alg, (0.04, 0.02), 2_000, **kwargs)
        b = smetool.verify(alg, (0.04, 0.02), 2_000, **kwargs)
        assert matmul.fp32_precision == "tf32"  # restored
    finally:
        matmul.fp32_precision = saved
    assert torch.equal(a.weak_errors.errors, b.weak_errors.errors)
    assert torch.equal(a.weak_errors.stderrs, b.weak_errors.stderrs)
    info = a.settings["device_info"]
    assert info["name"] == torch.cuda.get_device_name() and info["tf32_matmul"] is False
    assert info["cuda"] == torch.version.cuda


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_chunks_come_from_the_free_memory():
    sde = smetool.FunctionSDE(lambda t, x: -x, lambda t, x: 0.2 * x)
    prod = SDEProducer(sde, torch.ones(1, dtype=F64, device="cuda"), (0.0, 1.0), dt=0.25)
    r = run_monte_carlo(prod, {"x": lambda x: x[:, 0]}, 200_000, seed=0, progress=False)
    assert r.chunk_size == 200_000  # above the CPU cap of 65,536: one chunk on the GPU
    assert r.device["type"] == "cuda" and r.device["name"] == torch.cuda.get_device_name()


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_compiled_kernels_agree_with_eager_and_the_gbm_benchmark_runs(tmp_path):
    alg = smetool.DropoutAlgorithm.verification_default(device="cuda")
    kwargs = dict(horizon=0.04, steps_per_lr=4, controls=False, seed=3, device="cuda",
                  progress=False)
    eager = smetool.verify(alg, (0.04, 0.02), 4_096, order=2, compile=False, **kwargs)
    compiled = smetool.verify(alg, (0.04, 0.02), 4_096, order=2, compile=True, **kwargs)
    torch.testing.assert_close(compiled.weak_errors.approx_means, eager.weak_errors.approx_means,
                               rtol=1e-11, atol=1e-13)
    out = tmp_path / "gbm.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gbm_gpu.py"),
                           "--device", "cuda", "--paths", "65536", "--repeats", "2",
                           "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["method"] for r in rows} == {"smetool", "plain", "plain compiled", "torchsde"}
