"""Where the time of ``smetool verify dropout`` goes: a cProfile breakdown by component.

Runs the plug-in's defaults of ``smetool verify dropout`` (``--order 1`` or ``2``: control
variates, negative controls, the small-noise Heun scheme) under :mod:`cProfile` and prints the
cumulative seconds of each component (the discrete side, the SME side, the negative controls, the
control variates' linearisation and derivatives, the memory probe) and of the hot kernels. Shares
of overlapping rows do not add up (a kernel's time is inside its side's).

    python benchmarks/profile_verify.py [--order 2] [--paths 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

import torch

import smetool
from smetool.algorithms.registry import get_plugin
from smetool.brownian import GaussianIncrements
from smetool.models import DropoutProblem, dropout_kernels
from smetool.models.two_layer import TwoLayerNet
from smetool.montecarlo import control, engine
from smetool.verification import probe, producers

ROWS = [
    ("verify (total)", smetool.verify),
    ("probe of the plug-in", probe.probe_plugin),
    ("memory probe (chunk plan)", engine.plan_chunk_size),
    ("chunks (weak_error)", engine.run_chunks),
    ("discrete side", producers.AlgorithmProducer.__call__),
    ("SME side + wrong-SME control", producers.CoupledSMEProducer.__call__),
    ("noise-free control", producers.FlowProducer.__call__),
    ("  discrete linearisation", producers.AlgorithmProducer.linearization),
    ("  SDE linearisation", control.linearize_sde),
    ("  CV derivatives (∇g, ∇²g)", control.control_values),
    ("kernel: network terms", dropout_kernels.network_terms.fn),
    ("kernel: contractions (blocks)", dropout_kernels.blocks),
    ("kernel: Hessian-vector product", dropout_kernels.loss_hvp.fn),
    ("kernel: F z weights", dropout_kernels.weighted_blocks.fn),
    ("discrete dropout gradient", TwoLayerNet.scaled_loss_grad),
    ("Brownian increments", GaussianIncrements.sample),
    ("dropout masks", DropoutProblem.sample_scale),
]


def _cumulative(stats: pstats.Stats, fn) -> float:
    """Cumulative seconds of one function in a profile."""
    code = fn.__code__
    row = stats.stats.get((code.co_filename, code.co_firstlineno, code.co_name))  # type: ignore[attr-defined]
    return 0.0 if row is None else row[3]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=1, choices=(1, 2))
    parser.add_argument("--paths", type=int, default=None, help="default: the plug-in's")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    spec = get_plugin("dropout")
    d = spec.run_defaults(args.order)
    paths = args.paths or d["n_paths"]
    algorithm = spec.build()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    result = smetool.verify(algorithm, d["lrs"], paths, horizon=d["horizon"], order=args.order,
                            steps_per_lr=d["steps_per_lr"], method=d["method"], progress=False)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    total = _cumulative(stats, smetool.verify)
    print(f"smetool verify dropout --order {args.order}: {len(d['lrs'])} learning rates, {paths} "
          f"paths, {d['method']}, {result.settings['variance_reduction']} control variates, "
          f"{torch.get_num_threads()} threads; {wall:.1f} s wall (under cProfile)")
    rows = {}
    for label, fn in ROWS:
        sec = _cumulative(stats, fn)
        rows[label] = sec
        print(f"  {label:<34s} {sec:8.2f} s  {100 * sec / total:5.1f} %")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"order": args.order, "paths": paths, "wall_seconds": wall,
                       "threads": torch.get_num_threads(), "torch": str(torch.__version__),
                       "seconds": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
