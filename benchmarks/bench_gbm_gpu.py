"""Benchmark: the GPU ensemble setting of DiffEqGPU.jl — geometric Brownian motion, many paths.

The problem of DiffEqGPU's ensemble SDE benchmark (Utkarsh et al., CMAME 2024): three independent
geometric Brownian motions ``dX = μ X dt + σ X dW`` (diagonal noise), ``μ = 1.5``, ``σ = 0.01``,
``X_0 = (0.1, 0.1, 0.1)``, on ``[0, 1]`` with 256 Euler–Maruyama steps in float32, final state
only. DiffEqGPU reports 2²³ paths in 716 ms on its GPU, ≈ 3.0e9 path-steps per second; the ratio
to that figure is printed for CUDA runs (another GPU, so it is indicative only).

Contenders, side by side in one run on the same device, paths and steps:

* ``smetool``: :func:`smetool.solve` (Euler–Maruyama, saving only ``t = 1``);
* ``plain``: a hand-written batched loop ``x ← x + x (μ h + σ √h z)`` — the eager floor;
* ``plain compiled``: the same update compiled with :func:`torch.compile` (on CUDA in
  ``mode="reduce-overhead"``, i.e. CUDA graphs), the normals drawn outside the compiled region;
  compile time is reported apart (``first call``), not in the rate;
* ``torchsde``: ``torchsde.sdeint(method="euler")`` with a ``BrownianInterval``.

Every contender runs once to warm up, then ``--repeats`` times; the median is reported, timed
between device synchronisations, all with the CPU allocator of smetool's loops
(:func:`smetool.device.steady_allocator`). ``--fast`` is the test suite's smoke run on the CPU (1,024 paths,
no compilation); the GPU setting is ``--device cuda`` (2²⁰ … 2²³ paths by default).

    python benchmarks/bench_gbm_gpu.py --device cuda [--paths 1048576,8388608] [--json out.json]

References
----------
U. Utkarsh, V. Churavy, Y. Ma, T. Besard, P. Srisuma, T. Gymnich, A. R. Gerlach, A. Edelman,
G. Barbastathis, R. D. Braatz, C. Rackauckas, "Automated translation and accelerated solving of
differential equations on multiple GPU platforms", Comput. Methods Appl. Mech. Engrg. 419 (2024)
116591.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torchsde
from timing import timed

import smetool
from smetool.device import device_info, steady_allocator

MU, SIGMA, X0, T, STEPS, DIM = 1.5, 0.01, 0.1, 1.0, 256, 3
DIFFEQGPU_RATE = 2**23 * 256 / 0.716
"""DiffEqGPU's reported rate on its GPU: 2²³ paths × 256 steps in 716 ms (≈ 3.0e9 path-steps/s)."""


def _x0(paths: int, device: torch.device) -> torch.Tensor:
    return torch.full((paths, DIM), X0, dtype=torch.float32, device=device)


def _gbm_sde() -> smetool.FunctionSDE:
    return smetool.FunctionSDE(lambda t, x: MU * x, lambda t, x: SIGMA * x, noise_kind="diagonal")


def run_smetool(paths: int, steps: int, device: torch.device):
    sde = _gbm_sde()

    def go(seed: int) -> torch.Tensor:
        return smetool.solve(sde, _x0(paths, device), (0.0, T), dt=T / steps, generator=seed,
                             save_at=(T,)).final

    return go


def _update(x: torch.Tensor, z: torch.Tensor, h: float, noise: float) -> torch.Tensor:
    # x + μ x h + σ x √h z as one writes it; the compiled form fuses it into one kernel.
    return x + x * (MU * h + noise * z)


def run_plain(paths: int, steps: int, device: torch.device, compiled: bool = False):
    h, noise = T / steps, SIGMA * math.sqrt(T / steps)
    update = _update
    if compiled:
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        update = torch.compile(_update, mode=mode, dynamic=False)

    def go(seed: int) -> torch.Tensor:
        gen = torch.Generator(device=device).manual_seed(seed)
        x = _x0(paths, device)
        for _ in range(steps):
            z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=device)
            if compiled and device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # each step is a new graph replay
                x = update(x, z, h, noise).clone()  # a replay's output is overwritten by the next
            else:
                x = update(x, z, h, noise)
        return x

    return go


class _TorchsdeGBM:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return MU * y

    def g(self, t, y):
        return SIGMA * y


def run_torchsde(paths: int, steps: int, device: torch.device):
    ts = torch.tensor([0.0, T], device=device)

    def go(seed: int) -> torch.Tensor:
        y0 = _x0(paths, device)
        bm = torchsde.BrownianInterval(0.0, T, size=(paths, DIM), dtype=torch.float32,
                                       device=device, entropy=seed)
        with torch.no_grad():
            return torchsde.sdeint(_TorchsdeGBM(), y0, ts, bm=bm, method="euler",
                                   dt=T / steps)[-1]

    return go


def main(argv=None) -> int:
    with steady_allocator():
        return _main(argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--paths", default=None,
                        help="comma-separated path counts (default: 2^20..2^23 on CUDA, 2^16 on CPU)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", default=None,
                        choices=("smetool", "plain", "plain compiled", "torchsde"))
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled plain loop")
    parser.add_argument("--fast", action="store_true", help="the test suite's CPU smoke run")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.fast:
        args.paths, args.repeats, args.no_compile = "1024", 1, True
    if args.paths is None:
        args.paths = ",".join(str(2**k) for k in (20, 21, 22, 23)) if device.type == "cuda" \
            else str(2**16)
    sizes = [int(p) for p in args.paths.split(",")]
    names = args.only or ["smetool", "plain", "plain compiled", "torchsde"]
    if args.no_compile:
        names = [n for n in names if n != "plain compiled"]
    makers = {"smetool": run_smetool, "plain": run_plain, "torchsde": run_torchsde,
              "plain compiled": lambda P, S, d: run_plain(P, S, d, compiled=True)}
    info = device_info(device)
    print(f"GBM (DiffEqGPU setting): {DIM} dims, μ={MU}, σ={SIGMA}, {args.steps} steps, float32, "
          f"{info['type']} ({info['name']}), torch {info['torch']}, median of {args.repeats}")
    print(f"{'method':<16} {'paths':>9} {'first call s':>13} {'seconds':>9} {'path-steps/s':>13}  "
          "E X_T (exact 0.1·e^1.5 = 0.4482)")
    rows = []
    for P in sizes:
        for name in names:
            go = makers[name](P, args.steps, device)
            first, sec = timed(go, args.repeats, device)
            mean = float(go(99).mean())
            rate = P * args.steps / sec
            rows.append({"method": name, "paths": P, "seconds": sec, "first_call_seconds": first,
                         "path_steps_per_second": rate, "mean": mean})
            print(f"{name:<16} {P:>9} {first:>13.3f} {sec:>9.4f} {rate:>13.3e}  {mean:.4f}")
    ratios = {}
    for P in sizes:
        rate = {r["method"]: r["path_steps_per_second"] for r in rows if r["paths"] == P}
        if "smetool" in rate and "plain" in rate:
            ratios[f"smetool / plain @ {P}"] = rate["smetool"] / rate["plain"]
        if "smetool" in rate and "torchsde" in rate:
            ratios[f"smetool / torchsde @ {P}"] = rate["smetool"] / rate["torchsde"]
        if "smetool" in rate and device.type == "cuda":
            ratios[f"smetool / DiffEqGPU @ {P}"] = rate["smetool"] / DIFFEQGPU_RATE
    for k, v in ratios.items():
        print(f"{k} = {v:.3g}x")
    if args.json:
        record = {"config": {k: v for k, v in vars(args).items() if k != "json"},
                  "device": info, "rows": rows, "ratios": ratios,
                  "diffeqgpu_path_steps_per_second": DIFFEQGPU_RATE}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
