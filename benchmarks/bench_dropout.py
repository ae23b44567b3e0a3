"""Benchmark: path-steps per second of the dropout SME, smetool vs torchsde vs a naive loop.

All three integrate the order-1 dropout SME of the verification problem
(``DropoutAlgorithm.verification_default()``, m = 16, D = 48, M = 136) with Euler–Maruyama at
step ``lr``:

* ``smetool``: :func:`smetool.solve` — closed-form batched drift and the matrix-free noise product
  ``F(θ) dW`` (``diffusion_product``);
* ``torchsde``: ``torchsde.sdeint(method="euler")`` with the same SME as a general-noise torchsde
  SDE (``g`` returns the full ``(P, D, M)`` factor, which torchsde multiplies with ``dW``);
* ``naive``: what one writes without batching — a Python loop over paths, ``L_S`` by autograd and
  the factor formed per path.

The discrete dropout step is timed too. Each contender runs on its own number of paths (torchsde
and the naive loop are slow); the table compares path-steps per second. A script, not a test.

    python benchmarks/bench_dropout.py [--paths 10000] [--steps 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchsde

import smetool


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _TorchsdeDropout(torch.nn.Module):
    noise_type = "general"
    sde_type = "ito"

    def __init__(self, sme):
        super().__init__()
        self.sme = sme

    def f(self, t, y):
        return self.sme.drift(float(t), y)

    def g(self, t, y):
        return self.sme.diffusion(float(t), y)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=10_000, help="paths for smetool and the step")
    parser.add_argument("--torchsde-paths", type=int, default=None,
                        help="paths for torchsde (default: as --paths, so the ratio compares equal batches)")
    parser.add_argument("--naive-paths", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the measurements to this path")
    args = parser.parse_args(argv)
    if args.torchsde_paths is None:
        args.torchsde_paths = args.paths
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    alg = smetool.DropoutAlgorithm.verification_default(dtype=dtype, device=device)
    sme = alg.sme(args.lr, 1)
    problem = alg.problem
    T = args.steps * args.lr
    rows = []

    def run_smetool():
        smetool.solve(sme, alg.initial_state(args.paths), (0.0, T), dt=args.lr, generator=0)

    rows.append(("smetool solve (EM)", args.paths, _timed(run_smetool, args.repeats)))

    def run_step():
        gen = torch.Generator(device=device).manual_seed(0)
        x = alg.initial_state(args.paths)
        for _ in range(args.steps):
            x = alg.step(x, args.lr, gen)

    rows.append(("discrete dropout step", args.paths, _timed(run_step, args.repeats)))

    ts = torch.tensor([0.0, T], dtype=dtype, device=device)
    wrapped = _TorchsdeDropout(sme)

    def run_torchsde():
        y0 = alg.initial_state(args.torchsde_paths)
        bm = torchsde.BrownianInterval(0.0, T, size=(args.torchsde_paths, problem.noise_dim),
                                       dtype=dtype, device=device, entropy=0)
        with torch.no_grad():
            torchsde.sdeint(wrapped, y0, ts, bm=bm, dt=args.lr, method="euler")

    rows.append(("torchsde sdeint (euler)", args.torchsde_paths,
                 _timed(run_torchsde, max(1, args.repeats - 2))))

    def run_naive():
        gen = torch.Generator(device=device).manual_seed(0)
        for theta in alg.initial_state(args.naive_paths):
            theta = theta.clone()
            for _ in range(args.steps):
                th = theta.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(problem.expected_loss(th[None]).sum(), th)
                F = problem.noise_factor(theta[None])[0]
                z = torch.randn(F.shape[1], generator=gen, dtype=dtype, device=device)
                # EM at h = lr: √lr F(θ) ΔW with ΔW = √h z, i.e. lr F z
                theta = theta - args.lr * grad + args.lr * (F @ z)

    rows.append(("naive per-path autograd", args.naive_paths, _timed(run_naive, 1)))

    rates = {name: paths * args.steps / sec for name, paths, sec in rows}
    print(f"dropout SME (m={problem.width}, D={problem.n_params}, M={problem.noise_dim}), "
          f"{args.steps} steps, {args.dtype}, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'method':<26} {'paths':>7} {'seconds':>9} {'path-steps/s':>13}")
    for name, paths, sec in rows:
        print(f"{name:<26} {paths:>7} {sec:>9.3f} {rates[name]:>13.3e}")
    ours = rates["smetool solve (EM)"]
    print(f"smetool / torchsde = {ours / rates['torchsde sdeint (euler)']:.1f}x (target >= 5x)")
    print(f"smetool / naive loop = {ours / rates['naive per-path autograd']:.0f}x")
    if args.json:
        import json

        record = {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "methods": {name: {"paths": paths, "seconds": sec, "path_steps_per_second": rates[name]}
                        for name, paths, sec in rows},
            "ratios": {"smetool / torchsde": ours / rates["torchsde sdeint (euler)"],
                       "smetool / naive": ours / rates["naive per-path autograd"]},
        }
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
