"""Monte Carlo beyond one process: a Dask cluster as the executor of the chunk engine.

The chunk engine (:mod:`smetool.montecarlo.engine`) runs any :class:`concurrent.futures.Executor`
and merges the chunks in chunk order, so the bits of a result do not depend on where the chunks
ran. This module makes the supported cluster engine, Dask (``pip install 'smetool[cluster]'``), one
call away: :func:`dask_executor` starts a local cluster of process workers or connects to a running
scheduler and returns a :class:`DaskExecutor`, an executor that also owns (and closes) what it
started. Chunks are cloudpickled, so plug-ins whose test functions are lambdas run there as they
are; a standard :class:`~concurrent.futures.ProcessPoolExecutor` pickles with :mod:`pickle`, which
refuses lambdas and local functions.

Failures: a worker that dies loses only the chunks it was running or holding; the scheduler reruns
them on other workers (up to ``distributed.scheduler.allowed-failures`` deaths per chunk, default
3, before ``KilledWorker`` is raised). A chunk that *raises* is not retried by default: chunks are
deterministic, a rerun raises again. Merged chunks are in the checkpoint, which the client writes.

References
----------
M. Rocklin, "Dask: parallel computation with blocked algorithms and task scheduling", Proc. 14th
Python in Science Conf. (SciPy 2015) — the task scheduler used here.
"""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from ..checks import check_positive_int

__all__ = ["DaskExecutor", "dask_executor", "check_scheduler", "MALLOC_VARIABLE",
           "LOCAL_CLUSTER_CONFIG"]

MALLOC_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
"""The glibc variable that Dask's nannies set in their workers (65536 by default).

Setting it turns off glibc's adaptive ``mmap`` threshold, so every large tensor is mapped and
unmapped again; PyTorch CPU chunks of many small operations then run about 3× slower (measured on
the dropout verification, ``docs/cluster.md``). :func:`dask_executor` starts local workers without
it and warns when a remote cluster's workers have it.
"""

LOCAL_CLUSTER_CONFIG = {
    f"distributed.nanny.pre-spawn-environ.{MALLOC_VARIABLE}": None,
    # Observability that a Monte-Carlo run does not use (the statistical profiler samples every
    # worker thread's stack 100 times a second; the event-loop and system monitors wake up every
    # 20 and 500 ms): with them an idle 1-worker cluster used 0.08 CPU-seconds per second, without
    # them 0.03 (measured on the 2-core machine of docs/cluster.md). The memory monitor stays.
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}
"""Dask settings of the local clusters started by :func:`dask_executor`."""

_INSTALL = "pip install 'smetool[cluster]'"

WORKER_EXIT_TIMEOUT = 30.0
"""Seconds a local worker process gets to exit when its cluster closes.

Dask gives it 4 (``Nanny.close(timeout=5)``), then kills it and logs "Worker process still alive
after 4.0 seconds, killing": a worker with PyTorch loaded took 3–4.5 s to exit on the 2-core
development machine, so most ``--workers`` runs ended with that warning although every chunk
was merged. The chunks are done by then; waiting is harmless."""


async def _close_all(workers: list[Any], timeout: float) -> None:
    await asyncio.gather(*(w.close(timeout=timeout) for w in workers))


def _close_local_cluster(cluster: Any) -> None:
    """Close a local cluster, giving its worker processes :data:`WORKER_EXIT_TIMEOUT` to exit."""
    _, distributed = _dask()
    nannies = [w for w in getattr(cluster, "workers", {}).values()
               if isinstance(w, distributed.Nanny)]
    if nannies:
        cluster.sync(_close_all, nannies, WORKER_EXIT_TIMEOUT)
    cluster.close()


_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$")


def check_scheduler(scheduler: str | os.PathLike, what: str = "`scheduler`") -> str:
    """``scheduler`` if it is a scheduler address or an existing scheduler file, checked without
    connecting.

    An address is ``SCHEME://HOST:PORT`` (schemes tcp, tls, inproc, ucx, ws, wss) or
    ``HOST:PORT``; a scheduler file is a path ending in ``.json`` that exists (Dask's client would
    otherwise wait for it to appear, for ever).

    Raises
    ------
    ValueError
        Anything else, in one line naming ``what`` and the value.
    """
    where = os.fspath(scheduler) if isinstance(scheduler, os.PathLike) else scheduler
    if not isinstance(where, str) or not where:
        raise ValueError(f"{what} must be an address tcp://HOST:PORT (or HOST:PORT) or a scheduler "
                         f"file ending in .json; got {scheduler!r}.")
    scheme, sep, rest = where.partition("://")
    if sep:
        if scheme not in _SCHEMES or (scheme != "inproc" and not _HOST_PORT.match(rest)):
            raise ValueError(f"{what} must be an address SCHEME://HOST:PORT with SCHEME one of "
                             f"{', '.join(_SCHEMES)}; got {where!r}.")
        return where
    path = Path(where)
    if path.suffix == ".json":
        if not path.is_file():
            raise ValueError(f"{what}: the scheduler file {where!r} does not exist (start the "
                             "scheduler with --scheduler-file first).")
        return where
    if _HOST_PORT.match(where):
        return where
    raise ValueError(f"{what} must be an address tcp://HOST:PORT (or HOST:PORT) or a scheduler "
                     f"file ending in .json; got {where!r}.")


def _dask() -> tuple[Any, Any]:
    """``(dask.config, distributed)``, imported on first use: Dask is an optional extra."""
    try:
        import dask.config  # optional: only the cluster functions need it
        import distributed
    except ImportError:
        raise ImportError(
            f"running on a Dask cluster needs dask.distributed, which is not installed ({_INSTALL})."
        ) from None
    return dask.config, distributed


class DaskExecutor(Executor):
    """A Dask client as a :class:`concurrent.futures.Executor` for the Monte-Carlo engine.

    Pass it as ``executor=`` to :func:`~smetool.verify`, :func:`~smetool.weak_error`,
    :func:`~smetool.run_monte_carlo` or :func:`~smetool.richardson_monte_carlo`. Tasks are
    submitted with ``pure=False`` (every chunk is a new task, never a cached one).

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    retries : int
        Reruns of a chunk that raises (0: chunks are deterministic). Workers that die are handled
        by the scheduler whatever this is.
    owned : sequence, optional
        Objects with ``close()`` (the client, a local cluster) closed by :meth:`shutdown`, last
        first. :func:`dask_executor` passes what it started; a client passed by the user is left
        open.

    Attributes
    ----------
    client : distributed.Client
    """

    def __init__(self, client: Any, *, retries: int = 0, owned: tuple[Any, ...] = ()):
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"`retries` must be a non-negative integer; got {retries!r}.")
        self.client = client
        self._executor = client.get_executor(pure=False, retries=retries)
        self._owned = tuple(owned)
        self._closed = False

    @property
    def workers(self) -> int:
        """The number of task slots now: worker threads summed over the connected workers."""
        return int(sum(self.client.nthreads().values()))

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on the cluster; a :class:`concurrent.futures.Future`."""
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks; cancel or wait for the pending ones; close what this executor started.

        Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=wait and not cancel_futures)
        _, distributed = _dask()
        for thing in reversed(self._owned):
            if isinstance(thing, distributed.LocalCluster):
                _close_local_cluster(thing)
            else:
                thing.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def _checked(executor: DaskExecutor) -> DaskExecutor:
    """The executor, after a warning if its workers run with :data:`MALLOC_VARIABLE` set."""
    try:
        values = executor.client.run(os.environ.get, MALLOC_VARIABLE)
    except Exception:  # a worker that cannot answer now is the scheduler's business, not ours
        return executor
    bad = [v for v in values.values() if v is not None]
    if bad:
        warnings.warn(
            f"{len(bad)} of {len(values)} Dask workers run with {MALLOC_VARIABLE}={bad[0]} (the "
            "Dask nanny's default), which makes PyTorch CPU chunks about 3x slower; start them "
            "without it (docs/cluster.md, 'Worker environment').", RuntimeWarning, stacklevel=3)
    return executor


def dask_executor(
    workers: int | None = None,
    scheduler: str | os.PathLike | None = None,
    *,
    processes: bool = True,
    threads_per_worker: int = 1,
    retries: int = 0,
    timeout: float | None = None,
) -> DaskExecutor:
    """A Dask executor: a new local cluster of ``workers``, or a running cluster's ``scheduler``.

    Use it as a context manager, which closes the client and the local cluster at the end::

        with dask_executor(workers=2) as executor:
            result = smetool.verify(algorithm, lrs, 100_000, horizon=1.0, executor=executor)

    The result is bit-identical to the same call without ``executor`` (chunks are merged in chunk
    order); ``chunk_size`` decides how many chunks there are to share out (a learning rate with
    fewer chunks than workers leaves workers idle).

    Parameters
    ----------
    workers : int, optional
        Start a local cluster with this many workers. Process workers get one thread each and
        ``OMP_NUM_THREADS=1`` (Dask's default), and are started without :data:`MALLOC_VARIABLE`.
        A worker process that dies is restarted by its nanny. The cluster runs with
        :data:`LOCAL_CLUSTER_CONFIG` (no profiler, slower monitors).
    scheduler : str or path, optional
        Connect to a running scheduler instead: an address (``"tcp://HOST:8786"``) or the JSON
        scheduler file written by ``dask scheduler --scheduler-file`` (HPC recipes).
    processes : bool
        Local workers as processes (default) or as threads of this process (an in-process
        cluster: no pickling, no start-up cost, shares this process's GIL).
    threads_per_worker : int
        Threads of each local worker.
    retries : int
        Reruns of a chunk that raises (see :class:`DaskExecutor`).
    timeout : float, optional
        Seconds to wait for the scheduler (default: Dask's ``distributed.comm.timeouts.connect``,
        30 s unless configured).

    Returns
    -------
    DaskExecutor

    Raises
    ------
    ValueError
        Neither or both of ``workers`` and ``scheduler``; a non-positive count; a ``scheduler``
        that is neither an address nor an existing scheduler file (:func:`check_scheduler`).
    ImportError
        Without ``dask.distributed`` (the ``cluster`` extra).
    OSError
        A scheduler that cannot be reached within ``timeout``.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError(
            "give either `workers` (a local cluster) or `scheduler` (an address or scheduler file)"
            f"; got workers={workers!r}, scheduler={scheduler!r}.")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"`retries` must be a non-negative integer; got {retries!r}.")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
    threads = check_positive_int(threads_per_worker, "threads_per_worker")
    config, distributed = _dask()
    # Not the process's default client: dask code elsewhere in the program keeps its own.
    connect: dict[str, Any] = {"set_as_default": False}
    if timeout is not None:
        connect["timeout"] = timeout
    if scheduler is not None:
        where = check_scheduler(scheduler)
        path = Path(where)
        if "://" not in where and path.suffix == ".json":
            client = distributed.Client(scheduler_file=str(path), **connect)
        else:
            client = distributed.Client(where, **connect)
        return _checked(DaskExecutor(client, retries=retries, owned=(client,)))
    # Read when the cluster, its nannies and the client are created (a restarted worker reuses its
    # nanny's copy), so they only have to hold while these start.
    with config.set(LOCAL_CLUSTER_CONFIG):
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=threads, processes=bool(processes),
            dashboard_address=":0")  # any free port: 8787 may be another cluster's
        try:
            client = distributed.Client(cluster, **connect)
        except BaseException:
            cluster.close()
            raise
    return _checked(DaskExecutor(client, retries=retries, owned=(cluster, client)))
