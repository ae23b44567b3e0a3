"""Benchmark: path-steps per second of the dropout SME, smetool vs torchsde vs a naive loop.

All contenders integrate the order-1 dropout SME of the verification problem
(``DropoutAlgorithm.verification_default()``, m = 16, D = 48, M = 136) with Euler–Maruyama at
step ``lr``, in one run:

* ``smetool``: :func:`smetool.solve` — the fused Euler increment ``b h + √lr F ΔW`` in one
  contraction (``DropoutSME.euler_increment``), no ``(P, D, M)`` factor;
* ``smetool compiled`` (with ``--compile``): the same inside
  :func:`smetool.kernels.compiled_kernels` (``torch.compile`` of the kernels; compile time is
  printed apart and not in the rate);
* ``torchsde``: ``torchsde.sdeint(method="euler")`` on the same SME and the same batch as a
  general-noise torchsde SDE (``g`` returns the full ``(P, D, M)`` factor, which torchsde
  multiplies with ``dW``);
* ``naive``: a Python loop over paths, ``∇L_S`` by autograd and the factor formed per path;
* the discrete dropout step on the same batch: ``SME step / discrete step`` is the price of one
  SME step in discrete steps.

Every contender runs once to warm up, then ``--repeats`` times; the median is reported, timed
after a device synchronisation. Every contender runs with the CPU allocator that smetool's loops
use (:func:`smetool.device.steady_allocator`: freed memory kept for the next step), so that the
ratios compare the code, not the allocator. A script, not a test (``--fast`` is the test suite's smoke run).

    python benchmarks/bench_dropout.py [--paths 10000] [--steps 20] [--device cpu] [--compile]
"""

from __future__ import annotations

import argparse
import json

import torch
import torchsde
from timing import timed

import smetool
from smetool.device import device_info, steady_allocator
from smetool.kernels import compiled_kernels


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
    with steady_allocator():
        return _main(argv)


def _main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=10_000, help="paths of every batched contender")
    parser.add_argument("--naive-paths", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the compiled kernels")
    parser.add_argument("--fast", action="store_true", help="tiny sizes (the test suite)")
    parser.add_argument("--json", default=None, help="also write the measurements to this path")
    args = parser.parse_args(argv)
    if args.fast:
        args.paths, args.naive_paths, args.steps, args.repeats = 64, 2, 3, 1
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    alg = smetool.DropoutAlgorithm.verification_default(dtype=dtype, device=device)
    sme = alg.sme(args.lr, 1)
    problem = alg.problem
    T = args.steps * args.lr
    P = args.paths
    x0 = alg.initial_state(P)
    rows: list[tuple[str, int, float, float]] = []

    def run_smetool():
        smetool.solve(sme, x0, (0.0, T), dt=args.lr, generator=0)

    rows.append(("smetool solve (EM)", P, *timed(lambda _: run_smetool(), args.repeats, device)))
    if args.compile:
        def run_compiled():
            with compiled_kernels(True):
                run_smetool()

        rows.append(("smetool compiled (EM)", P, *timed(lambda _: run_compiled(), args.repeats, device)))

    def run_step():
        gen = torch.Generator(device=device).manual_seed(0)
        x = x0
        for _ in range(args.steps):
            x = alg.step(x, args.lr, gen)

    rows.append(("discrete dropout step", P, *timed(lambda _: run_step(), args.repeats, device)))

    ts = torch.tensor([0.0, T], dtype=dtype, device=device)
    wrapped = _TorchsdeDropout(sme)

    def run_torchsde():
        bm = torchsde.BrownianInterval(0.0, T, size=(P, problem.noise_dim), dtype=dtype,
                                       device=device, entropy=0)
        with torch.no_grad():
            torchsde.sdeint(wrapped, x0, ts, bm=bm, dt=args.lr, method="euler")

    rows.append(("torchsde sdeint (euler)", P, *timed(lambda _: run_torchsde(), args.repeats, device)))

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

    rows.append(("naive per-path autograd", args.naive_paths,
                 *timed(lambda _: run_naive(), max(1, args.repeats - 2), device)))

    rates = {name: paths * args.steps / sec for name, paths, _, sec in rows}
    ours = rates["smetool solve (EM)"]
    ratios = {
        "smetool / torchsde": ours / rates["torchsde sdeint (euler)"],
        "SME step / discrete step": rates["discrete dropout step"] / ours,
        "smetool / naive": ours / rates["naive per-path autograd"],
    }
    if args.compile:
        ratios["compiled / eager"] = rates["smetool compiled (EM)"] / ours
    info = device_info(device)
    print(f"dropout SME (m={problem.width}, D={problem.n_params}, M={problem.noise_dim}), "
          f"{args.steps} steps, {args.dtype}, {info['type']} ({info['name']}), torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'method':<26} {'paths':>7} {'first call s':>13} {'seconds':>9} {'path-steps/s':>13}")
    for name, paths, first, sec in rows:
        print(f"{name:<26} {paths:>7} {first:>13.3f} {sec:>9.3f} {rates[name]:>13.3e}")
    print(f"smetool / torchsde = {ratios['smetool / torchsde']:.1f}x (target >= 10x)")
    print(f"one SME step = {ratios['SME step / discrete step']:.2f} discrete steps (target <= 2.5)")
    print(f"smetool / naive loop = {ratios['smetool / naive']:.0f}x")
    if args.compile:
        print(f"compiled / eager = {ratios['compiled / eager']:.2f}x (compile time: the first call)")
    if args.json:
        record = {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": info,
            "methods": {name: {"paths": paths, "seconds": sec, "first_call_seconds": first,
                               "path_steps_per_second": rates[name]}
                        for name, paths, first, sec in rows},
            "ratios": ratios,
        }
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
