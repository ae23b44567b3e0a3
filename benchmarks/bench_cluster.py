"""Benchmark: ``verify dropout --order 2`` on 1 and 2 Dask process workers, and the cost of a chunk.

Runs the dropout plug-in's order-2 verification with the plug-in's *current* defaults (learning
rates, horizon, paths, SME steps, solver: read from its declaration at run time) three ways: here
without an executor, on a local Dask cluster of 1 process worker and on one of 2. All three use
the same chunk size (``paths / chunks-per-lr``), so all three give the same bits (checked). Prints
the wall times, the speed-up of 2 workers over 1, and two per-chunk overheads:

* ``overhead/chunk (verify)``: ``(t(1 worker) − t(local)) / chunks``, what shipping a verify chunk
  to a worker and its moments back costs on top of computing it, in wall time, and the same in
  CPU time (the client's process, which holds the local scheduler and nannies, plus the workers'
  processes, minus the local run's CPU time), which other processes on the machine do not
  inflate;
* ``round trip/chunk (empty)``: the wall time per chunk of a run of chunks that compute nothing
  (one worker), the scheduler's and the pickling's share alone, and its CPU time (client process
  plus worker).

Each chunk on a worker is also timed there (wall and CPU), which gives two numbers that stay
meaningful on a busy machine: the workers' *utilisation* (time spent in chunks / (workers × run
time); 1 means no worker ever waited for work) and their *CPU share* (CPU time / wall time in
chunks; below 1 when other processes took the cores, and then the wall-clock speed-up says more
about the neighbours than about smetool).

Cluster start-up (spawning workers, importing torch there) is timed apart and not in the runs: a
warm-up run on each cluster comes first. The three configurations run in interleaved rounds
(``--repeats``) and the fastest run of each is kept, so that a machine whose speed drifts over
minutes (a shared virtual machine) affects all three alike. Run it on an otherwise idle machine
with at least as many cores as workers; a script, not a test:

    OMP_NUM_THREADS=1 python benchmarks/bench_cluster.py [--paths N] [--chunks-per-lr 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from concurrent.futures import Executor, Future

import torch

from smetool import dask_executor, verify
from smetool.algorithms.registry import get_plugin
from smetool.montecarlo import run_chunks


def _nothing(size: int, chunk: int) -> dict[str, torch.Tensor]:
    """An empty chunk: one float64 value per sample, no simulation."""
    return {"x": torch.zeros(1, size, dtype=torch.float64)}


def _timed(fn, *args):
    """``fn(*args)`` on a worker, with its start and end (epoch seconds) and CPU seconds there."""
    start, cpu = time.time(), time.process_time()
    out = fn(*args)
    return out, start, time.time(), time.process_time() - cpu


class _Timing(Executor):
    """Runs every task through :func:`_timed` on ``inner`` and keeps the timings."""

    def __init__(self, inner: Executor):
        self.inner, self.timings = inner, []

    def submit(self, fn, /, *args):
        done: Future = Future()

        def unwrap(f: Future) -> None:
            if f.exception() is not None:
                done.set_exception(f.exception())
                return
            out, *timing = f.result()
            self.timings.append(timing)
            done.set_result(out)

        self.inner.submit(_timed, fn, *args).add_done_callback(unwrap)
        return done


def _cpu_seconds(executor) -> float:
    """CPU seconds used so far by this process (client, and a local cluster's scheduler and
    nannies) and by every worker process."""
    return time.process_time() + sum(executor.client.run(time.process_time).values())


def _rows(result) -> list[dict]:
    return [row.to_dict() for row in result.rows]


def _measure(algorithm, lrs, n_paths, run, executor=None) -> dict:
    """One verify run: its rows, wall and CPU seconds, and (on a cluster) the chunks' timings."""
    timing = None if executor is None else _Timing(executor)
    cpu = time.process_time() if executor is None else _cpu_seconds(executor)
    start = time.perf_counter()
    result = verify(algorithm, lrs, n_paths, executor=timing, **run)
    wall = time.perf_counter() - start
    cpu = (time.process_time() if executor is None else _cpu_seconds(executor)) - cpu
    return {"rows": _rows(result), "wall": wall, "cpu": cpu,
            "timings": None if timing is None else timing.timings}


def main(argv=None) -> int:
    spec = get_plugin("dropout")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=None,
                        help="paths per side and learning rate (default: the plug-in's for --order)")
    parser.add_argument("--chunks-per-lr", type=int, default=8,
                        help="chunks per learning rate, so that 2 workers can share them (default 8)")
    parser.add_argument("--order", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of (local, 1 worker, 2 workers), interleaved so that a machine "
                        "whose speed drifts affects all three alike; the fastest of each is kept")
    parser.add_argument("--empty-chunks", type=int, default=200)
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args(argv)
    defaults = spec.run_defaults(args.order)  # the order's learning rates, paths, steps, solver
    args.paths = args.paths or defaults["n_paths"]

    algorithm = spec.build(dtype=torch.float64, device="cpu",
                           **{o.name: o.default for o in spec.options})
    chunk = math.ceil(args.paths / args.chunks_per_lr)
    n_chunks = len(defaults["lrs"]) * math.ceil(args.paths / chunk)
    run = dict(horizon=defaults["horizon"], order=args.order, steps_per_lr=defaults["steps_per_lr"],
               method=defaults["method"], seed=args.seed, chunk_size=chunk, progress=False)
    lrs = ",".join(f"{lr:g}" for lr in defaults["lrs"])
    print(f"verify dropout --order {args.order}: lrs {lrs}, T={defaults['horizon']:g}, {args.paths} paths "
          f"in chunks of {chunk} ({n_chunks} chunks), steps_per_lr {defaults['steps_per_lr']}, "
          f"{defaults['method']}; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")

    names = {0: "local", 1: "1 worker", 2: "2 workers"}
    startup: dict[int, float] = {}
    best: dict[int, dict] = {}
    with contextlib.ExitStack() as stack:
        executors = {0: None}
        for n in (1, 2):
            start = time.perf_counter()
            executors[n] = stack.enter_context(dask_executor(workers=n))
            # Warm-up: every worker imports torch and smetool and runs verify chunks once.
            verify(algorithm, defaults["lrs"], 8 * n, executor=executors[n], **{**run, "chunk_size": 2})
            startup[n] = time.perf_counter() - start
        for _ in range(args.repeats):
            for n, executor in executors.items():
                got = _measure(algorithm, defaults["lrs"], args.paths, run, executor)
                if 0 in best and got["rows"] != best[0]["rows"]:
                    raise AssertionError(f"{names[n]} gave other numbers than the local run")
                if n not in best or got["wall"] < best[n]["wall"]:
                    best[n] = got
        start, cpu = time.perf_counter(), _cpu_seconds(executors[1])
        run_chunks(_nothing, args.empty_chunks, 1, fingerprint={}, checkpoint=None,
                   progress=False, executor=executors[1])
        empty = (time.perf_counter() - start) / args.empty_chunks
        empty_cpu = (_cpu_seconds(executors[1]) - cpu) / args.empty_chunks

    times = {names[n]: best[n]["wall"] for n in names}
    cpu_times = {names[n]: best[n]["cpu"] for n in names}
    utilisation, cpu_share = {}, {}
    for n in (1, 2):
        timings = best[n]["timings"]
        busy = sum(end - begin for begin, end, _ in timings)
        utilisation[n] = busy / (n * best[n]["wall"])
        cpu_share[n] = sum(cpu for _, _, cpu in timings) / busy
    speedup = times["1 worker"] / times["2 workers"]
    overhead = (times["1 worker"] - times["local"]) / n_chunks
    cpu_overhead = {names[n]: (best[n]["cpu"] - best[0]["cpu"]) / n_chunks for n in (1, 2)}
    for name, t in times.items():
        print(f"  {name:<10} {t:8.2f} s wall, {cpu_times[name]:8.2f} s CPU")
    print(f"  speed-up 2 workers / 1 worker: {speedup:.2f}x   (local / 2 workers: "
          f"{times['local'] / times['2 workers']:.2f}x)")
    print(f"  overhead/chunk (verify): {1e3 * overhead:+.0f} ms wall; CPU "
          + ", ".join(f"{k} {1e3 * v:+.0f} ms" for k, v in cpu_overhead.items()))
    print(f"  round trip/chunk (empty): {1e3 * empty:.1f} ms ({1e3 * empty_cpu:.1f} ms CPU)")
    print(f"  cluster start-up + warm-up: 1 worker {startup[1]:.1f} s, 2 workers {startup[2]:.1f} s")
    print(f"  workers' utilisation: 1 worker {utilisation[1]:.2f}, 2 workers {utilisation[2]:.2f}; "
          f"CPU share in chunks: {cpu_share[1]:.2f}, {cpu_share[2]:.2f}")
    if min(cpu_share.values()) < 0.9:
        print("  BUSY MACHINE: the workers got less than 90% of a core; the wall-clock speed-up "
              "is not a measurement of smetool")
    print(f"  results bit-identical: local, 1 worker, 2 workers (best of {args.repeats})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"paths": args.paths, "chunk_size": chunk, "chunks": n_chunks,
                       "lrs": list(defaults["lrs"]), "order": args.order, "repeats": args.repeats,
                       "seconds": times, "cpu_seconds": cpu_times, "speedup_2_over_1": speedup,
                       "overhead_per_chunk_s": overhead, "cpu_overhead_per_chunk_s": cpu_overhead,
                       "empty_round_trip_s": empty, "empty_round_trip_cpu_s": empty_cpu,
                       "startup_s": startup, "utilisation": utilisation, "cpu_share": cpu_share,
                       "load_average": os.getloadavg()[0]}, fh, indent=2)
    return 0


if __name__ == "__main__":  # the guard matters: Dask's process workers import the main module
    raise SystemExit(main())
