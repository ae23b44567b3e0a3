"""A checkpointed Monte-Carlo run for the kill-and-resume test in test_montecarlo.py.

Run as ``python _resume_worker.py CHECKPOINT`` it computes slowly (a short sleep per chunk) so that
the test can SIGKILL it after a checkpoint was written; imported, :func:`run` repeats the same run
at full speed (the sleep does not change any number).
"""

from __future__ import annotations

import sys
import time

import torch

from smetool import run_monte_carlo

N_PATHS, CHUNK, SEED, EVERY = 4_000, 100, 11, 2  # 40 chunks, a checkpoint every 2
N_CHUNKS = N_PATHS // CHUNK
DELAY = 0.1


def producer(n_paths: int, generator: torch.Generator) -> torch.Tensor:
    """Exact 2-d geometric Brownian motion (mu = 0.3, sigma = 0.4) at t = 0.5, 1, 2."""
    t = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    dw = torch.randn(3, n_paths, 2, generator=generator, dtype=torch.float64)
    dw = dw * torch.diff(t, prepend=torch.zeros(1, dtype=torch.float64)).sqrt()[:, None, None]
    w = dw.cumsum(0)
    return torch.exp((0.3 - 0.08) * t[:, None, None] + 0.4 * w)


def slow_producer(n_paths: int, generator: torch.Generator) -> torch.Tensor:
    time.sleep(DELAY)
    return producer(n_paths, generator)


TESTS = {"x0": lambda x: x[:, 0], "x0x1": lambda x: x[:, 0] * x[:, 1]}


def run(checkpoint, slow: bool = False):
    return run_monte_carlo(slow_producer if slow else producer, TESTS, N_PATHS, seed=SEED,
                           chunk_size=CHUNK, checkpoint=checkpoint, checkpoint_every=EVERY,
                           tag="resume-worker gbm", progress=False)


if __name__ == "__main__":
    run(sys.argv[1], slow=True)
