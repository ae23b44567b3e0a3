"""Benchmark: Euler–Maruyama on an Ornstein–Uhlenbeck SDE — smetool vs torchsde vs a plain loop.

The three contenders integrate the same diagonal-noise SDE ``dX = θ(μ − X) dt + σ dW`` on the same
fixed grid, side by side in one run:

* ``smetool``: :func:`smetool.solve` with :class:`smetool.EulerMaruyama` (Gaussian increments,
  non-finite detection on, saving the start and the end);
* ``torchsde``: ``torchsde.sdeint(method="euler")`` with its default Brownian motion (a
  ``BrownianInterval``), saving the start and the end;
* ``plain``: a hand-written eager loop ``x = x + θ(μ − x) dt + σ √dt · randn`` — the practical floor.

The times come from one child process that runs the contenders round-robin, ``--repeats``
rounds after one short warm-up solve each, and reports the median per contender: on a shared
machine every contender then sees the same load, so the ratios hold even when the seconds do
not; every contender runs with the CPU allocator of smetool's loops
(:func:`smetool.device.steady_allocator`: freed memory kept for the next step). Peak memory
comes from one fresh child process per contender (one run each): the peak
resident set size above its size after imports and set-up (CPU), or
``torch.cuda.max_memory_allocated`` (CUDA). ``--profile`` adds a per-step breakdown of smetool's
loop.

Run ``python benchmarks/bench_solvers.py --help`` for the options; the defaults are the reference
configuration (10⁴ paths × 10 dimensions × 10³ steps, float32, CPU).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import statistics
import sys
import time

THETA, MU, SIGMA, T = 1.0, 0.5, 0.3, 1.0


def _setup(args):
    import torch

    torch.set_num_threads(args.threads) if args.threads else None
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    x0 = torch.zeros(args.paths, args.dim, dtype=dtype, device=device)
    return torch, dtype, device, x0


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_smetool(torch, x0, args, seed):
    import smetool

    sde = smetool.FunctionSDE(lambda t, x: THETA * (MU - x),
                              lambda t, x: torch.full_like(x, SIGMA), noise_kind="diagonal")
    dt = T / args.steps
    return smetool.solve(sde, x0, (0.0, T), dt=dt, method=smetool.EulerMaruyama(),
                         generator=seed).final


class _TorchsdeOU:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return THETA * (MU - y)

    def g(self, t, y):
        import torch

        return torch.full_like(y, SIGMA)


def _run_torchsde(torch, x0, args, seed):
    import torchsde

    ts = torch.tensor([0.0, T], dtype=x0.dtype, device=x0.device)
    bm = torchsde.BrownianInterval(0.0, T, size=tuple(x0.shape), dtype=x0.dtype, device=x0.device,
                                   entropy=seed)
    with torch.no_grad():
        return torchsde.sdeint(_TorchsdeOU(), x0, ts, bm=bm, method="euler", dt=T / args.steps)[-1]


def _run_plain(torch, x0, args, seed):
    gen = torch.Generator(device=x0.device).manual_seed(seed)
    dt = T / args.steps
    scale = SIGMA * math.sqrt(dt)
    x = x0.clone()
    for _ in range(args.steps):
        x = x + THETA * (MU - x) * dt + scale * torch.randn(x.shape, generator=gen, dtype=x.dtype,
                                                            device=x.device)
    return x


RUNNERS = {"smetool": _run_smetool, "torchsde": _run_torchsde, "plain": _run_plain}


def _timing_child(names, args, queue):
    """Round-robin timing of every contender in one process (the same load for all)."""
    torch, dtype, device, x0 = _setup(args)
    small = argparse.Namespace(**{**vars(args), "steps": 10})
    for name in names:
        RUNNERS[name](torch, x0, small, 0)  # warm-up: first-call costs are not what we measure
    _sync(torch, device)
    times: dict = {name: [] for name in names}
    checks = {}
    for r in range(args.repeats):
        for name in names:
            _sync(torch, device)
            t0 = time.perf_counter()
            out = RUNNERS[name](torch, x0, args, 1 + r)
            _sync(torch, device)
            times[name].append(time.perf_counter() - t0)
            checks[name] = float(out.mean()), float(out.var())
            del out
    queue.put({"times": times, "checks": checks})


def _memory_child(name, args, queue):
    """Peak memory of one contender's run, alone in a fresh process."""
    torch, dtype, device, x0 = _setup(args)
    runner = RUNNERS[name]
    small = argparse.Namespace(**{**vars(args), "steps": 10})
    runner(torch, x0, small, 0)
    _sync(torch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = runner(torch, x0, args, 1)
    _sync(torch, device)
    del out
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    queue.put(max(peak, 0))


def _steady(target, *args):
    from smetool.device import steady_allocator

    with steady_allocator():
        target(*args)


def _in_child(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_steady, args=(target, *args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def measure_all(names, args):
    """``{name: {"times", "peak_bytes", "check"}}``: times round-robin in one child, memory
    per contender in its own child."""
    timing = _in_child(_timing_child, list(names), args)
    return {name: {"times": timing["times"][name], "check": timing["checks"][name],
                   "peak_bytes": _in_child(_memory_child, name, args)} for name in names}


def profile_smetool(args):
    """Where one smetool EM step spends its time: the operations of the loop, timed one by one."""
    torch, dtype, device, x0 = _setup(args)
    import smetool
    from smetool.brownian import GaussianIncrements

    sde = smetool.FunctionSDE(lambda t, x: THETA * (MU - x),
                              lambda t, x: torch.full_like(x, SIGMA), noise_kind="diagonal")
    inc = GaussianIncrements()
    gen = torch.Generator(device=device).manual_seed(0)
    dt = T / args.steps
    x = x0.clone()
    n = args.steps
    parts = {"increments N(0, h)": 0.0, "drift": 0.0, "diffusion": 0.0, "x + h b": 0.0,
             "+ σ ΔW (in place)": 0.0, "non-finite check /8 steps": 0.0}
    clock = time.perf_counter
    for k in range(n):
        t = k * dt
        c0 = clock()
        dW = inc.sample(t, t + dt, tuple(x.shape), gen, dtype, device)
        _sync(torch, device)
        c1 = clock()
        drift = sde.drift(t, x)
        _sync(torch, device)
        c2 = clock()
        g = sde.diffusion(t, x)
        _sync(torch, device)
        c3 = clock()
        y = torch.add(x, drift, alpha=dt)
        _sync(torch, device)
        c4 = clock()
        x = y.addcmul_(g, dW)
        _sync(torch, device)
        c5 = clock()
        if (k + 1) % 8 == 0:  # the loop looks for non-finite states once per window of steps
            bool(torch.isfinite(x.sum(dim=1)).all())
        c6 = clock()
        for key, a, b in zip(parts, (c0, c1, c2, c3, c4, c5), (c1, c2, c3, c4, c5, c6)):
            parts[key] += b - a
    total = sum(parts.values())
    print(f"\nsmetool per-step breakdown ({n} steps, {args.paths}×{args.dim}, {args.dtype}):")
    for key, v in parts.items():
        print(f"  {key:<28s} {1e6 * v / n:8.1f} µs/step  {100 * v / total:5.1f} %")
    print(f"  {'total':<28s} {1e6 * total / n:8.1f} µs/step")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads in each child (0: torch's default)")
    parser.add_argument("--only", nargs="+", choices=list(RUNNERS), default=list(RUNNERS))
    parser.add_argument("--profile", action="store_true", help="also time smetool's step parts")
    parser.add_argument("--json", default=None, help="also write the measurements to this path")
    args = parser.parse_args(argv)
    for name in ("paths", "dim", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer; got {getattr(args, name)}.")

    import torch

    path_steps = args.paths * args.steps
    print(f"OU, Euler–Maruyama: {args.paths} paths × {args.dim} dims × {args.steps} steps, "
          f"{args.dtype}, {args.device}, torch {torch.__version__}, "
          f"threads {args.threads or torch.get_num_threads()}, median of {args.repeats}")
    results = measure_all(args.only, args)
    header = (f"{'method':<10s} {'seconds':>9s} {'path-steps/s':>13s} {'s / 1e6 path-steps':>19s} "
              f"{'peak MB':>9s} {'MB / 1e6 path-steps':>20s}  final mean, var")
    print(header)
    print("-" * len(header))
    for name, res in results.items():
        sec = statistics.median(res["times"])
        mb = res["peak_bytes"] / 2**20
        print(f"{name:<10s} {sec:9.3f} {path_steps / sec:13.3e} {1e6 * sec / path_steps:19.4f} "
              f"{mb:9.1f} {1e6 * mb / path_steps:20.3f}  {res['check'][0]:.4f}, {res['check'][1]:.5f}")
    med = {name: statistics.median(res["times"]) for name, res in results.items()}
    if "smetool" in med:
        if "torchsde" in med:
            print(f"torchsde / smetool = {med['torchsde'] / med['smetool']:.2f}× "
                  f"(smetool is {med['torchsde'] / med['smetool']:.1f}× faster; target ≥ 10×)")
        if "plain" in med:
            print(f"smetool / plain loop = {med['smetool'] / med['plain']:.2f}× (target ≤ 1.05×)")
    # Exact OU moments at T from x0 = 0, for a sanity check of the printed columns.
    mean = MU * (1 - math.exp(-THETA * T))
    var = SIGMA**2 / (2 * THETA) * (1 - math.exp(-2 * THETA * T))
    print(f"exact OU: mean {mean:.4f}, var {var:.5f} (EM's bias is O(dt))")
    if args.json:
        _write_json(args, results, med, path_steps, torch)
    if args.profile:
        profile_smetool(args)
    return 0


def _write_json(args, results, med, path_steps, torch) -> None:
    """The table as JSON, for the validation page (scripts/validation.py)."""
    import json

    record = {
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "profile")},
        "torch": torch.__version__,
        "methods": {name: {"seconds": med[name], "path_steps_per_second": path_steps / med[name],
                           "peak_mb": res["peak_bytes"] / 2**20, "times": res["times"]}
                    for name, res in results.items()},
        "ratios": {},
    }
    if "smetool" in med and "torchsde" in med:
        record["ratios"]["torchsde / smetool"] = med["torchsde"] / med["smetool"]
    if "smetool" in med and "plain" in med:
        record["ratios"]["smetool / plain"] = med["smetool"] / med["plain"]
    with open(args.json, "w") as fh:
        json.dump(record, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
