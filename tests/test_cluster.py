"""Monte Carlo on Dask: the same bits as a local run, workers that die, a client that dies.

Every comparison here is exact (``==`` on floats, ``torch.equal`` on tensors): chunks are pure
functions of their index and are merged in chunk order, so nothing random is left to tolerate.
The runs are tiny (dropout, order 2, two learning rates, 64 paths in chunks of 16); what is tested
is where the chunks run, not the statistics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("distributed", reason="the `cluster` extra (dask[distributed]); make test installs it")
cloudpickle = pytest.importorskip("cloudpickle")

from smetool import DaskExecutor, dask_executor, verify  # noqa: E402
from smetool.algorithms.registry import get_plugin, plugins  # noqa: E402
from smetool.cli import main  # noqa: E402
from smetool.montecarlo import read_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LRS = (0.04, 0.02)
N_PATHS, CHUNK = 64, 16  # 4 chunks per learning rate
RUN = dict(horizon=0.2, order=2, steps_per_lr=4, method="heun", seed=5, chunk_size=CHUNK, noise_modes=0,
           progress=False)


def _algorithm():
    return get_plugin("dropout").build(dtype=torch.float64, device="cpu", keep_prob=0.9, width=16)


def _rows(result):
    return [row.to_dict() for row in result.rows]


def _assert_same(result, reference):
    assert _rows(result) == _rows(reference)
    table, ref = result.weak_errors, reference.weak_errors
    for field in ("errors", "stderrs", "approx_means", "reference_means",
                  "reference_solver_errors"):
        assert torch.equal(getattr(table, field), getattr(ref, field)), field


@pytest.fixture(scope="module")
def local_result():
    return verify(_algorithm(), LRS, N_PATHS, **RUN)


@pytest.fixture(scope="module")
def process_cluster():
    with dask_executor(workers=2) as executor:
        yield executor


def test_bit_identical_locally_on_process_workers_and_on_threads(local_result, process_cluster):
    assert process_cluster.workers == 2
    _assert_same(verify(_algorithm(), LRS, N_PATHS, executor=process_cluster, **RUN), local_result)
    with dask_executor(workers=2, processes=False) as threads:
        _assert_same(verify(_algorithm(), LRS, N_PATHS, executor=threads, **RUN), local_result)


def _suicidal(tests, marker: Path, parent: int):
    """The test functions, except that the first call in a worker process (not this one) kills
    that process with SIGKILL, once (``marker`` remembers it): a worker dying mid-chunk."""
    def wrap(g):
        def g_or_die(x):
            if os.getpid() != parent and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return g(x)
        return g_or_die
    return {name: wrap(g) for name, g in tests.items()}


def test_a_killed_worker_changes_nothing(local_result, process_cluster, tmp_path):
    algorithm = _algorithm()
    marker = tmp_path / "killed"
    tests = _suicidal(algorithm.test_functions(), marker, os.getpid())
    result = verify(algorithm, LRS, N_PATHS, test_functions=tests, executor=process_cluster, **RUN)
    assert marker.exists()  # a worker died mid-chunk; its chunks ran elsewhere
    _assert_same(result, local_result)


# The client process of a cluster run, killed by the test: slow test functions in the workers
# (0.25 s a call, three calls a chunk) leave seconds between the first checkpoint and the end.
_CLIENT = textwrap.dedent("""
    import os, sys, time, torch
    from smetool import dask_executor, verify
    from smetool.algorithms.registry import get_plugin
    algorithm = get_plugin("dropout").build(dtype=torch.float64, device="cpu", keep_prob=0.9,
                                            width=16)
    parent = os.getpid()
    def slow(g):
        def g_slowly(x):
            if os.getpid() != parent:
                time.sleep(0.25)
            return g(x)
        return g_slowly
    tests = {{name: slow(g) for name, g in algorithm.test_functions().items()}}
    with dask_executor(workers=2) as executor:
        verify(algorithm, {lrs}, {n}, test_functions=tests, executor=executor,
               checkpoint=sys.argv[1], **{run})
""")


class ClientDown(Exception):
    """Stands for the client going down in the fast variant below."""


class LosesChunk(Executor):
    """Delegates to ``inner``, except that the first chunk ``chunk`` submitted fails: the run
    stops when merging reaches it, as if the client had gone down there."""

    def __init__(self, inner: Executor, chunk: int):
        self.inner, self.chunk, self.failed = inner, chunk, False

    def submit(self, fn, /, *args, **kwargs):
        if args[2] == self.chunk and not self.failed:  # chunk_moments(task, size, chunk)
            self.failed = True
            lost: Future = Future()
            lost.set_exception(ClientDown())
            return lost
        return self.inner.submit(fn, *args, **kwargs)


def test_a_rerun_after_an_interrupted_cluster_run_resumes(local_result, tmp_path):
    # Fast variant of the SIGKILL test below, on an in-process cluster: the run stops at chunk 2
    # of the first learning rate. Chunk 3 may have finished on a worker, out of order; only the
    # chunks merged in order before the failure are in the checkpoint.
    ckpt = tmp_path / "ckpt"
    with dask_executor(workers=2, processes=False) as threads:
        with pytest.raises(ClientDown):
            verify(_algorithm(), LRS, N_PATHS, executor=LosesChunk(threads, 2), checkpoint=ckpt,
                   **RUN)
        assert read_checkpoint(ckpt / "step0.pt")["next_chunk"] == 2
        assert not (ckpt / "step1.pt").exists()
        resumed = verify(_algorithm(), LRS, N_PATHS, executor=threads, checkpoint=ckpt, **RUN)
    _assert_same(resumed, local_result)


@pytest.mark.slow
def test_a_rerun_after_the_client_died_resumes_from_the_checkpoints(local_result, tmp_path):
    ckpt = tmp_path / "ckpt"
    code = _CLIENT.format(lrs=LRS, n=N_PATHS, run=RUN)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # Its own process group: the client, its scheduler, nannies and workers die together, as
    # when the node running them goes.
    proc = subprocess.Popen([sys.executable, "-c", code, str(ckpt)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (ckpt / "step0.pt").exists():
            if proc.poll() is not None:
                pytest.fail(f"the client exited before a checkpoint: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the client wrote no checkpoint within 120 s")
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done = read_checkpoint(ckpt / "step0.pt")["next_chunk"]
    assert 0 < done and not (ckpt / "step1.pt").exists(), done  # killed mid-run
    # The same call again (here without the sleeps, which change no number) resumes: chunks
    # already merged are not rerun, and the numbers are those of an uninterrupted local run.
    with dask_executor(workers=2, processes=False) as threads:
        resumed = verify(_algorithm(), LRS, N_PATHS, executor=threads, checkpoint=ckpt, **RUN)
    _assert_same(resumed, local_result)


def test_the_cli_runs_on_a_cluster_with_the_same_numbers(process_cluster, tmp_path, monkeypatch):
    # The CLI's own cluster is dask_executor(workers=N) (tested above); here it gets the module's
    # cluster, wrapped so that the CLI closing it leaves the cluster running.
    started = []

    def shared(workers=None, scheduler=None):
        started.append((workers, scheduler))
        return DaskExecutor(process_cluster.client)

    monkeypatch.setattr("smetool.cli.dask_executor", shared)
    argv = ["verify", "dropout", "--order", "2", "--lrs", "0.04,0.02", "--paths", "64",
            "--chunk-size", "16", "--seed", "5", "--quiet"]
    assert main(argv + ["--json", str(tmp_path / "local.json")]) == 0
    assert main(argv + ["--workers", "2", "--json", str(tmp_path / "cluster.json")]) == 0
    assert started == [(2, None)]
    local, cluster = ((tmp_path / f"{n}.json").read_text() for n in ("local", "cluster"))
    strip = [line for line in local.splitlines() if '"seconds"' not in line]
    assert strip == [line for line in cluster.splitlines() if '"seconds"' not in line]


def test_cli_takes_workers_or_a_scheduler_not_both(capsys):
    with pytest.raises(SystemExit) as info:
        main(["verify", "dropout", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_scheduler_is_a_one_line_error(capsys):
    import dask.config

    # Port 9 (discard) on loopback: nothing listens there; Dask retries until its timeout.
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code = main(["verify", "dropout", "--paths", "64", "--quiet", "--scheduler",
                     "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "127.0.0.1:9" in err, err


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give either `workers`"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "give either `workers`"),
    ({"workers": 0}, "`workers` must be"),
    ({"workers": 1, "retries": -1}, "`retries` must be"),
])
def test_dask_executor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dask_executor(**kwargs)


class ThroughCloudpickle(Executor):
    """Runs each task here after a cloudpickle round trip of the function and its arguments,
    which is what Dask does to a chunk on its way to a worker process."""

    def submit(self, fn, /, *args, **kwargs):
        fn, args, kwargs = cloudpickle.loads(cloudpickle.dumps((fn, args, kwargs)))
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done


@pytest.mark.parametrize("name", sorted(plugins()))
def test_every_plugins_chunks_travel_to_a_worker_unchanged(name):
    spec = plugins()[name]
    algorithm = spec.build(dtype=torch.float64, device="cpu",
                           **{o.name: o.default for o in spec.options})
    run = dict(horizon=spec.horizon, order=spec.orders[-1], steps_per_lr=spec.steps_per_lr,
               method=spec.method, seed=1, chunk_size=4, progress=False)
    if name == "dropout-net":
        # Its 610-parameter linearisation (a minute per run) is not what travels here; every
        # other plug-in's chunks carry their tangents, the hard controls and their pickles.
        run["variance_reduction"] = "none"
    lrs = spec.lrs[:2]
    _assert_same(verify(algorithm, lrs, 8, executor=ThroughCloudpickle(), **run),
                 verify(algorithm, lrs, 8, **run))


def test_fewer_chunks_than_workers_is_a_warning(process_cluster):
    with pytest.warns(RuntimeWarning, match=r"1 chunk\(s\) of 64 samples for 2 workers leave 1 "
                      r"idle; a chunk_size of at most 32"):
        verify(_algorithm(), LRS, N_PATHS, executor=process_cluster, **{**RUN, "chunk_size": 64})


def test_without_dask_the_cluster_options_say_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'smetool\[cluster\]'"):
        dask_executor(workers=1)
    assert main(["verify", "dropout", "--quiet", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "smetool[cluster]" in err, err


@pytest.mark.parametrize("name, lrs, n_paths, controls", [
    ("dropout", 2, 32, True),       # the control variates' Hessians by torch.func.hessian
    ("dropout-net", 2, 8, False),   # every step through torch.func (vmap, grad, jvp)
])
def test_chunks_on_threads_take_turns_in_torch_func(name, lrs, n_paths, controls):
    """Four threads running chunks whose code goes through ``torch.func`` transforms: with torch
    2.13 concurrent transforms corrupted the heap (a crash in every one of 4 + 2 tries before
    ``functorch_exclusive``). Now the run finishes and gives the serial run's bits."""
    spec = plugins()[name]
    algorithm = spec.build(dtype=torch.float64, device="cpu",
                           **{o.name: o.default for o in spec.options})
    run = dict(horizon=spec.horizon, order=1, steps_per_lr=spec.steps_per_lr, method=spec.method,
               seed=2, chunk_size=n_paths // 4, progress=False, controls=controls)
    with ThreadPoolExecutor(4) as pool:
        threaded = verify(algorithm, spec.lrs[:lrs], n_paths, executor=pool, **run)
    _assert_same(threaded, verify(algorithm, spec.lrs[:lrs], n_paths, **run))


def test_closing_a_local_cluster_waits_for_its_workers_to_exit():
    # Dask gives a worker 4 s to exit before its nanny kills it and logs "Worker process still
    # alive after 4.0 seconds, killing" (every `--workers` run ended so on the 2-core machine).
    # Here the worker's exit is made to take 6 s, deterministically.
    import logging

    def slow_exit():
        import multiprocessing.util
        import time

        multiprocessing.util.Finalize(None, time.sleep, args=(6,), exitpriority=0)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("distributed.nanny")
    logger.addHandler(handler)
    try:
        with dask_executor(workers=1) as executor:
            executor.client.run(slow_exit)
    finally:
        logger.removeHandler(handler)
    killed = [r.getMessage() for r in records if "still alive" in r.getMessage()]
    assert not killed, killed
