"""Tests of the Monte-Carlo runner: streaming moments, seeding, chunking, coverage, checkpoints."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import smetool
from smetool.montecarlo import (
    MonteCarloResult,
    SDEProducer,
    chunk_seed,
    read_checkpoint,
    run_monte_carlo,
)
from smetool.stats import StreamingMoments

F64 = torch.float64
WORKER = Path(__file__).with_name("_resume_worker.py")


def _load_worker():
    spec = importlib.util.spec_from_file_location("_resume_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lognormal(mu=0.2, sigma=0.5, times=(1.0,)):
    """Exact GBM X_t = exp((mu - sigma²/2) t + sigma W_t) at ``times``; E X_t = exp(mu t)."""
    t = torch.tensor(times, dtype=F64)

    def producer(n, gen, *, antithetic=False):
        z = torch.randn(len(times), n, 1, generator=gen, dtype=F64)
        if antithetic:
            z = -z
        dt = torch.diff(t, prepend=torch.zeros(1, dtype=F64))
        w = (z * dt.sqrt()[:, None, None]).cumsum(0)
        return torch.exp((mu - sigma**2 / 2) * t[:, None, None] + sigma * w)

    return producer


X = {"x": lambda x: x[:, 0]}
X12 = {"x": lambda x: x[:, 0], "x2": lambda x: x[:, 0] ** 2}


# ----------------------------------------------------------------------------- streaming moments


def test_streaming_moments_exact_small_sample():
    m = StreamingMoments()
    m.update(torch.tensor([[1.0, 2.0, 4.0]], dtype=F64))
    m.update(torch.tensor([[5.0]], dtype=F64))
    assert m.count == 4
    assert float(m.mean[0]) == 3.0
    assert float(m.variance[0]) == pytest.approx(10.0 / 3.0, rel=1e-15)
    assert float(m.stderr[0]) == pytest.approx(math.sqrt(10.0 / 3.0 / 4), rel=1e-15)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    offset=st.sampled_from([0.0, 1e8]),
)
def test_merge_equals_one_pass(data, cuts, offset):
    x = np.asarray(data) + offset
    bounds = sorted({min(c, len(x)) for c in cuts} | {0, len(x)})
    parts = []
    for lo, hi in zip(bounds, bounds[1:]):
        part = StreamingMoments()
        part.update(torch.tensor(x[lo:hi]).reshape(1, -1))
        parts.append(part)
    merged = StreamingMoments()
    for part in parts:
        merged.merge(part)
    one = StreamingMoments()
    one.update(torch.tensor(x).reshape(1, -1))
    assert merged.count == one.count == len(x)
    scale = np.abs(x).max() + 1.0
    # Chan's merge is backward stable: differences are rounding, relative to the data's scale.
    assert abs(float(merged.mean[0]) - float(one.mean[0])) <= 1e-13 * scale
    spread = float(np.var(x - x.mean())) + 1e-300
    tol = 1e-12 * scale**2 + 1e-9 * spread
    assert float(merged.m2[0]) == pytest.approx(float(one.m2[0]), rel=1e-9, abs=tol)
    assert float(one.variance[0]) == pytest.approx(float(np.var(x, ddof=1)), rel=1e-9, abs=1e-12 * scale**2)


def test_streaming_moments_validation():
    m = StreamingMoments()
    with pytest.raises(ValueError, match="no samples yet"):
        _ = m.variance
    with pytest.raises(ValueError, match="`batch` must be a tensor of shape"):
        m.update([1.0, 2.0])
    m.update(torch.ones(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="cannot be merged into moments of shape"):
        m.update(torch.ones(3, 3, dtype=F64))
    with pytest.raises(TypeError, match="`other` must be a StreamingMoments"):
        m.merge(1.0)
    assert torch.isnan(StreamingMoments.from_state_dict(
        {"count": 1, "mean": torch.zeros(1, dtype=F64), "m2": torch.zeros(1, dtype=F64)}).variance).all()


# ----------------------------------------------------------------------------- seeding, chunks


def test_chunk_seed_is_deterministic_and_distinct():
    assert chunk_seed(3, 0) == chunk_seed(3, 0)
    seeds = {chunk_seed(s, c) for s in range(5) for c in range(50)}
    assert len(seeds) == 250
    assert all(0 <= s < 2**63 for s in seeds)


def test_same_chunk_size_is_bit_identical_and_matches_manual_chunks():
    prod = lognormal(times=(0.5, 1.0))
    a = run_monte_carlo(prod, X12, 1_050, seed=7, chunk_size=100, progress=False)
    b = run_monte_carlo(prod, X12, 1_050, seed=7, chunk_size=100, progress=False)
    assert torch.equal(a.means, b.means) and torch.equal(a.variances, b.variances)
    assert (a.n_chunks, a.count, a.chunk_size) == (11, 1_050, 100)
    # The documented contract: chunk c is producer(size_c, Generator().manual_seed(chunk_seed(seed, c))).
    chunks = []
    for c in range(11):
        n = min(100, 1_050 - 100 * c)
        xs = prod(n, torch.Generator().manual_seed(chunk_seed(7, c)))
        m = StreamingMoments()
        m.update(torch.stack([xs[..., 0], xs[..., 0] ** 2]))
        chunks.append(m)
    forward = StreamingMoments()
    for m in chunks:
        forward.merge(m)
    assert torch.equal(forward.mean, a.means)
    backward = StreamingMoments()
    for m in reversed(chunks):  # chunk-order independence, up to rounding
        backward.merge(m)
    torch.testing.assert_close(backward.mean, a.means, rtol=1e-13, atol=0)


def test_different_chunk_sizes_agree_within_standard_errors():
    prod = lognormal(times=(0.5, 1.0))
    runs = [run_monte_carlo(prod, X12, 20_000, seed=3, chunk_size=c, progress=False)
            for c in (20_000, 1_000, 333)]
    runs.append(run_monte_carlo(prod, X12, 20_000, seed=3, memory_budget=2**16, progress=False))
    assert runs[-1].chunk_size < 20_000
    ref = runs[0]
    for r in runs[1:]:
        assert not torch.equal(r.means, ref.means)
        # Different chunkings are different samples; 5 combined SE: two-sided false-failure
        # probability 6e-7 per entry (the samples are at worst positively correlated).
        bound = 5 * (r.stderrs**2 + ref.stderrs**2).sqrt()
        assert bool(((r.means - ref.means).abs() <= bound).all())


def test_means_match_the_exact_expectation():
    r = run_monte_carlo(lognormal(times=(0.5, 1.0)), X12, 40_000, seed=0, chunk_size=8_000,
                        times=(0.5, 1.0), progress=False)
    exact = torch.tensor([[math.exp(0.1), math.exp(0.2)],
                          [math.exp(0.2 + 0.125), math.exp(0.4 + 0.25)]], dtype=F64)
    assert bool(((r.means - exact).abs() <= 5 * r.stderrs).all())  # 5 SE, false failure ~6e-7 each
    lo, hi = r.ci(0.999999)
    assert bool(((lo <= exact) & (exact <= hi)).all())
    assert r.times == (0.5, 1.0)


def test_confidence_interval_coverage():
    """Over 400 independent runs the 95% intervals of a known mean cover at a rate of 95% ± 4 sd.

    sd = sqrt(0.95 · 0.05 / 400) = 0.0109, so the rate must lie in [0.906, 0.994]; the
    false-failure probability of that band is about 1e-4 (normal approximation of the binomial).
    The samples are log-normal (skewness 1.8), 200 per run, so the t-interval is nearly exact.
    """
    prod = lognormal(mu=0.2, sigma=0.5)
    exact = math.exp(0.2)
    covered = 0
    for seed in range(400):
        r = run_monte_carlo(prod, X, 200, seed=seed, chunk_size=200, progress=False)
        lo, hi = r.ci(0.95)
        covered += bool(lo[0, 0] <= exact <= hi[0, 0])
    sd = math.sqrt(0.95 * 0.05 / 400)
    assert abs(covered / 400 - 0.95) <= 4 * sd, covered


# ----------------------------------------------------------------------------- antithetic


def test_antithetic_pairs_and_variance_reduction():
    prod = lognormal(mu=0.2, sigma=0.5)
    anti = run_monte_carlo(prod, X12, 20_000, seed=5, chunk_size=5_000, antithetic=True,
                           progress=False)
    plain = run_monte_carlo(prod, X12, 40_000, seed=5, chunk_size=5_000, progress=False)
    assert anti.count == 20_000 and anti.n_paths == 40_000
    exact = torch.tensor([[math.exp(0.2)], [math.exp(0.4 + 0.25)]], dtype=F64)
    assert bool(((anti.means - exact).abs() <= 5 * anti.stderrs).all())
    # The reported factor is the ratio of the two estimators' variances at equal path counts;
    # compare it with the independent run's variance (both estimated: allow 20 %).
    measured = plain.stderrs**2 / anti.stderrs**2
    torch.testing.assert_close(anti.variance_reduction, measured, rtol=0.2, atol=0)
    assert bool((anti.variance_reduction > 1).all())


def test_antithetic_needs_a_cooperating_producer():
    with pytest.raises(TypeError, match="accept the keyword `antithetic`"):
        run_monte_carlo(lambda n, g: torch.zeros(1, n, 1), X, 10, seed=0, antithetic=True,
                        progress=False)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_paths": 0}, ValueError, "`n_paths` must be an integer ≥ 2 .*; got 0"),
        ({"seed": -1}, ValueError, "`seed` must be a non-negative integer; got -1"),
        ({"seed": 1.5}, ValueError, "`seed` must be a non-negative integer"),
        ({"chunk_size": 0}, ValueError, "`chunk_size` must be a positive integer"),
        ({"checkpoint_every": 0}, ValueError, "`checkpoint_every` must be a positive integer"),
        ({"memory_budget": -5}, ValueError, "`memory_budget` must be a positive integer"),
        ({"test_functions": {}}, ValueError, "`test_functions` must be a non-empty dict"),
        ({"test_functions": {"": X["x"]}}, ValueError, "keys must be non-empty strings"),
        ({"test_functions": {"x": 3}}, TypeError, r"`test_functions\['x'\]` must be callable"),
        ({"test_functions": {"x": lambda x: x}}, ValueError,
         r"test function 'x' must map states \(N, D\) to values \(N,\)"),
        ({"times": (0.0, 1.0)}, ValueError, r"`times` must have one entry per save time \(1\)"),
        ({"producer": 5}, TypeError, "`producer` must be callable"),
        ({"producer": lambda n, g: torch.zeros(n, 1)}, ValueError,
         r"must return states of shape \(S, P, D\) with P = 10"),
        ({"producer": lambda n, g: [0.0]}, TypeError, "must return a Tensor"),
        ({"producer": lambda n, g: torch.zeros(1, n, 1, dtype=torch.long)}, ValueError,
         "must return a floating tensor"),
        ({"producer": lambda n, g: torch.full((1, n, 1), float("nan"))}, FloatingPointError,
         r"chunk 0 diverged: 10 of 10 main samples non-finite"),
    ],
)
def test_validation_errors(kwargs, error, match):
    args = {"producer": lognormal(), "test_functions": X, "n_paths": 10, "seed": 0,
            "chunk_size": 10, "progress": False}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        run_monte_carlo(args.pop("producer"), args.pop("test_functions"), args.pop("n_paths"), **args)


def test_producer_shape_must_not_change_between_chunks():
    calls = []

    def producer(n, gen):
        calls.append(n)
        return torch.zeros(len(calls), n, 1, dtype=F64)

    with pytest.raises(ValueError, match="same number of save times and dimension every call"):
        run_monte_carlo(producer, X, 20, seed=0, chunk_size=10, progress=False)


def test_result_to_dict_and_repr():
    r = run_monte_carlo(lognormal(times=(0.5, 1.0)), X12, 100, seed=0, chunk_size=50,
                        antithetic=True, progress=False)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["names"] == ["x", "x2"] and d["n_chunks"] == 2 and len(d["means"][0]) == 2
    assert "variance_reduction" in d
    text = repr(r)
    assert "MonteCarloResult(count=100" in text and "x2 @ t=1" in text
    assert isinstance(r, MonteCarloResult)


def test_progress_bar_shows_and_can_be_silenced(capsys):
    r = run_monte_carlo(lognormal(), X, 100, seed=0, chunk_size=10, progress=True)
    assert r.count == 100
    shown = capsys.readouterr().err
    assert "/100" in shown and "path/s" in shown  # paths done of the total, and the rate
    run_monte_carlo(lognormal(), X, 100, seed=0, chunk_size=10, progress=False)
    silent = capsys.readouterr()
    assert silent.err == "" and silent.out == ""


def test_a_single_path_is_refused():
    with pytest.raises(ValueError,
                       match=r"`n_paths` must be an integer ≥ 2 \(a standard error needs a variance\); "
                             r"got 1"):
        run_monte_carlo(lognormal(), X, 1, seed=0)


# ----------------------------------------------------------------------------- checkpoints


class Interrupt(Exception):
    pass


def test_resume_after_interruption_is_bit_identical(tmp_path):
    prod = lognormal(times=(0.5, 1.0))
    calls = {"n": 0}

    def flaky(n, gen):
        calls["n"] += 1
        if calls["n"] == 6:
            raise Interrupt
        return prod(n, gen)

    kwargs = dict(seed=2, chunk_size=100, checkpoint_every=2, tag="gbm", progress=False)
    ckpt = tmp_path / "mc"
    with pytest.raises(Interrupt):
        run_monte_carlo(flaky, X12, 1_000, checkpoint=ckpt, **kwargs)
    # chunks 0-3 written, chunk 5 failed
    assert read_checkpoint(ckpt / "run_monte_carlo.pt")["next_chunk"] == 4
    resumed = run_monte_carlo(flaky, X12, 1_000, checkpoint=ckpt, **kwargs)
    fresh = run_monte_carlo(prod, X12, 1_000, **kwargs)
    assert torch.equal(resumed.means, fresh.means)
    assert torch.equal(resumed.variances, fresh.variances)
    assert calls["n"] == 6 + 6  # 5 good calls + the failing one; then only chunks 4-9 again
    # A finished checkpoint answers without calling the producer again.
    again = run_monte_carlo(flaky, X12, 1_000, checkpoint=ckpt, **kwargs)
    assert calls["n"] == 12 and torch.equal(again.means, fresh.means)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    worker = _load_worker()
    ckpt = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ckpt)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "run_monte_carlo.pt").exists():
            if proc.poll() is not None:
                pytest.fail(f"worker exited before writing a checkpoint: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("worker wrote no checkpoint within 120 s")
            time.sleep(0.01)
        proc.kill()  # SIGKILL: no cleanup, no flush
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = read_checkpoint(ckpt / "run_monte_carlo.pt")
    assert 0 < state["next_chunk"] < worker.N_CHUNKS, state["next_chunk"]
    resumed = worker.run(ckpt)
    fresh = worker.run(None)
    assert torch.equal(resumed.means, fresh.means)
    assert torch.equal(resumed.variances, fresh.variances)
    assert resumed.count == fresh.count == worker.N_PATHS


def test_mismatched_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "mc"
    run_monte_carlo(lognormal(), X, 100, seed=1, chunk_size=50, checkpoint=ckpt, tag="a",
                    progress=False)
    with pytest.raises(ValueError, match=r"belongs to a different run \(seed: checkpoint 1 vs now 2\)"):
        run_monte_carlo(lognormal(), X, 100, seed=2, chunk_size=50, checkpoint=ckpt, tag="a",
                        progress=False)
    with pytest.raises(ValueError, match="tag: checkpoint 'a' vs now 'b'"):
        run_monte_carlo(lognormal(), X, 100, seed=1, chunk_size=50, checkpoint=ckpt, tag="b",
                        progress=False)
    with pytest.raises(ValueError, match="chunk_size: checkpoint 50 vs now 25"):
        run_monte_carlo(lognormal(), X, 100, seed=1, chunk_size=25, checkpoint=ckpt, tag="a",
                        progress=False)
    with pytest.raises(ValueError, match="names: checkpoint"):
        run_monte_carlo(lognormal(), X12, 100, seed=1, chunk_size=50, checkpoint=ckpt, tag="a",
                        progress=False)
    bad = tmp_path / "garbage"
    bad.mkdir()
    (bad / "run_monte_carlo.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        run_monte_carlo(lognormal(), X, 100, seed=1, chunk_size=50, checkpoint=bad, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    torch.save({"version": 99}, other / "run_monte_carlo.pt")
    with pytest.raises(ValueError, match="is not a smetool Monte-Carlo checkpoint of version 3"):
        run_monte_carlo(lognormal(), X, 100, seed=1, chunk_size=50, checkpoint=other, progress=False)


# ----------------------------------------------------------------------------- SDEProducer


def _gbm_sde(mu=-1.0, sigma=0.2):
    return smetool.FunctionSDE(lambda t, x: mu * x, lambda t, x: sigma * x)


def test_sde_producer_antithetic_mirrors_additive_noise():
    ou = smetool.FunctionSDE(lambda t, x: torch.zeros_like(x), lambda t, x: 0.5 * torch.ones_like(x))
    prod = SDEProducer(ou, torch.tensor([1.0, -2.0], dtype=F64), (0.0, 1.0), dt=0.125,
                       save_at=[0.5, 1.0])
    plus = prod(64, torch.Generator().manual_seed(0))
    minus = prod(64, torch.Generator().manual_seed(0), antithetic=True)
    assert plus.shape == (2, 64, 2) and prod.times == (0.5, 1.0)
    torch.testing.assert_close(plus + minus, 2 * torch.tensor([1.0, -2.0], dtype=F64).expand(2, 64, 2))
    assert not torch.equal(plus, minus)


def test_sde_producer_in_run_monte_carlo_matches_em_moment():
    mu, sigma, h = -1.0, 0.2, 0.25
    prod = SDEProducer(_gbm_sde(mu, sigma), torch.ones(1, dtype=F64), (0.0, 1.0), dt=h)
    r = run_monte_carlo(prod, X12, 20_000, seed=4, chunk_size=10_000, times=prod.times,
                        antithetic=True, progress=False)
    exact = torch.tensor([(1 + mu * h) ** 4, ((1 + mu * h) ** 2 + sigma**2 * h) ** 4], dtype=F64)
    assert bool(((r.means[:, 1] - exact).abs() <= 5 * r.stderrs[:, 1]).all())
    assert torch.equal(r.stderrs[:, 0], torch.zeros(2, dtype=F64))  # t = 0 is deterministic


def test_sde_producer_validation():
    with pytest.raises(ValueError, match=r"`x0` must be a 1-D tensor \(D,\)"):
        SDEProducer(_gbm_sde(), torch.ones(3, 1), (0.0, 1.0), dt=0.1)
    with pytest.raises(ValueError, match="a torchsde Brownian object ignores it"):
        SDEProducer(_gbm_sde(), torch.ones(1), (0.0, 1.0), dt=0.1,
                    increments=lambda s, t: torch.zeros(1, 1))

    class Sampled(smetool.SDE):
        noise_kind = smetool.NoiseKind.SAMPLED

        def drift(self, t, x):
            return -x

        def sample_noise(self, t, x, generator):
            return torch.randn(x.shape, generator=generator, dtype=x.dtype)

    prod = SDEProducer(Sampled(), torch.ones(1, dtype=F64), (0.0, 1.0), dt=0.5)
    assert prod(3, torch.Generator().manual_seed(0)).shape == (2, 3, 1)
    with pytest.raises(ValueError, match="antithetic sampling needs the noise to come from"):
        prod(3, torch.Generator().manual_seed(0), antithetic=True)
    assert "SDEProducer(" in repr(prod)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_producer_runs_unchanged():
    prod = SDEProducer(_gbm_sde(), torch.ones(1, dtype=F64, device="cuda"), (0.0, 1.0), dt=0.25)
    r = run_monte_carlo(prod, X12, 10_000, seed=0, chunk_size=5_000, device="cuda",
                        progress=False)
    r2 = run_monte_carlo(prod, X12, 10_000, seed=0, chunk_size=5_000, device="cuda",
                         progress=False)
    assert torch.equal(r.means, r2.means) and r.means.device.type == "cpu"
    exact = torch.tensor([0.75**4, (0.75**2 + 0.04 * 0.25) ** 4], dtype=F64)
    assert bool(((r.means[:, 1] - exact).abs() <= 5 * r.stderrs[:, 1]).all())
