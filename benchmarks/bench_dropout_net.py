"""Benchmark: path-steps per second of dropout GD and its SME on an MLP and a CNN (digits).

For each network (``smetool verify dropout-net`` builtin MLP and CNN on the first ``--samples``
digits, float64) and each path count it times, per step of ``P`` paths:

* ``step``: one dropout GD step of the plug-in (:class:`smetool.algorithms.dropout_net.NetDropout`:
  masks from the generator, ``functional_call`` + ``vmap`` + ``grad`` over the module);
* ``plain``: the same step written by hand with ``torch.func`` on the same architecture (no module,
  no wrapper): the practical floor of a batched dropout step;
* ``sme``: one Heun step of the exact order-1 SME (two ``∇L_S`` and one matrix-free ``F dW``).

``ratio`` is plain / step time (1 = no overhead). Memory per path grows with the parameters ``D``
(state, gradients), the data ``n`` times the activations per example (the forward pass of every
path) and, for the SME, ``M = m(m+1)/2`` Brownian increments; the engine chunks paths.

    python benchmarks/bench_dropout_net.py [--paths 1000,10000] [--device cuda] [--fast]
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import timed
from torch.func import functional_call, grad, vmap

from smetool.algorithms.dropout_net import builtin_problem
from smetool.solvers import SmallNoiseHeun


def _plain_step(algo, lr: float):
    """A hand-written batched dropout GD step for the builtin networks (one dropout layer, then
    the rest of the network): the layers called functionally, the mask multiplied in by hand."""
    net, (X, y) = algo.model.module, algo.model.data(algo.theta0)
    slot = algo.model.layers[0]
    idx = list(dict(net.named_children())).index(slot.name)
    body, head = net[:idx], net[idx + 1:]
    body_names = [n for n, _ in body.named_parameters()]
    head_names = [n for n, _ in head.named_parameters()]

    def loss(params, mask):
        feats = functional_call(body, dict(zip(body_names, params[:len(body_names)])), (X,))
        out = functional_call(head, dict(zip(head_names, params[len(body_names):])), (feats * mask,))
        return algo.model.loss_fn(out, y)

    batched_grad = vmap(grad(loss))

    def step(params, generator):
        u = torch.rand((params[0].shape[0], *slot.mask_shape), generator=generator,
                       dtype=params[0].dtype, device=params[0].device)
        grads = batched_grad(params, (u < slot.keep_prob).to(u.dtype) / slot.keep_prob)
        return tuple(p - lr * q for p, q in zip(params, grads))

    return step


def _measure(algo, plain, P: int, lr: float, repeats: int, device: torch.device) -> dict:
    """Path-steps per second of the plug-in's step, the plain step and a Heun step of the SME."""
    sme, heun = algo.sme(lr, 1), SmallNoiseHeun()
    x = algo.initial_state(P, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    params = tuple(t.unsqueeze(0).repeat(P, *([1] * t.ndim))
                   for t in algo.model.unflatten(algo.theta0.to(device)).values())
    dW = torch.randn(P, sme.noise_dim, generator=gen, dtype=x.dtype, device=device)
    _, t_step = timed(lambda _: algo.step(x, lr, gen), repeats, device)
    _, t_plain = timed(lambda _: plain(params, gen), repeats, device)
    _, t_sme = timed(lambda _: heun.step(sme, 0.0, x, lr / 2, dW, gen), repeats, device)
    return {"paths": P, "D": algo.model.n_params, "M": sme.noise_dim,
            "step_path_steps_per_s": P / t_step, "plain_path_steps_per_s": P / t_plain,
            "ratio_plain_over_step": t_plain / t_step, "sme_path_steps_per_s": P / t_sme,
            "device": device.type}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="1000,10000", help="comma-separated path counts")
    parser.add_argument("--samples", type=int, default=32, help="digits in the training set")
    parser.add_argument("--width", type=int, default=8, help="MLP hidden units")
    parser.add_argument("--channels", type=int, default=4,
                        help="CNN channels (the exact SME's M = m(m+1)/2 with m = 16 · channels)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fast", action="store_true", help="tiny sizes (the test suite)")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    paths = [int(p) for p in args.paths.split(",")]
    samples, width, channels, repeats = args.samples, args.width, args.channels, args.repeats
    if args.fast:
        paths, samples, width, channels, repeats = [50], 8, 3, 1, 1
    rows = []
    print(f"{'model':>5} {'paths':>6} {'D':>6} {'M':>6} {'step ps/s':>11} {'plain ps/s':>11} "
          f"{'ratio':>6} {'sme ps/s':>10}")
    for model in ("mlp", "cnn"):
        algo = builtin_problem(model=model, width=width if model == "mlp" else channels,
                               n_samples=samples, device=device)
        plain = _plain_step(algo, args.lr)
        for P in paths:
            row = _measure(algo, plain, P, args.lr, repeats, device)
            rows.append({"model": model, **row})
            print(f"{model:>5} {P:>6} {row['D']:>6} {row['M']:>6} {row['step_path_steps_per_s']:>11.0f} "
                  f"{row['plain_path_steps_per_s']:>11.0f} {row['ratio_plain_over_step']:>6.2f} "
                  f"{row['sme_path_steps_per_s']:>10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "torch": torch.__version__}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
