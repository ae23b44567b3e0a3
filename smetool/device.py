"""Where a computation runs: the device's identity, its free memory, what one path costs there, and
the precision of float32 matrix products.

Monte-Carlo results record :func:`device_info`; checkpoints are fingerprinted with
:func:`device_fingerprint` (a run does not resume on another kind of device, GPU model, torch or
CUDA version, whose random streams or kernels may differ). Chunks run under :func:`exact_matmul`:
with TF32 matrix products (the default of some GPUs' float32 ``matmul``) a float32 contraction
keeps about 10 bits instead of 24, which is far above the weak errors of an order-2 check.
:func:`measure_bytes_per_path` measures the memory a computation allocates per path on any device
(a dispatch-level count of the tensors it creates and frees), which sizes the chunks.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import math
import os
import platform
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "load_jvp_decompositions",
    "device_info",
    "device_fingerprint",
    "exact_matmul",
    "steady_allocator",
    "free_memory",
    "PeakMemory",
    "measure_bytes_per_path",
    "format_bytes",
    "functorch_exclusive",
]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or device.type


def _backends() -> dict[str, Any]:
    """The float32-precision switches of torch (``fp32_precision``: ``"ieee"``, ``"tf32"``,
    ``"none"`` = inherit), by name; empty on a torch without them."""
    b = torch.backends
    found = {"cuda_matmul": getattr(b.cuda, "matmul", None),
             "cudnn_conv": getattr(getattr(b, "cudnn", None), "conv", None),
             "cudnn_rnn": getattr(getattr(b, "cudnn", None), "rnn", None),
             "mkldnn_matmul": getattr(getattr(b, "mkldnn", None), "matmul", None),
             "mkldnn_conv": getattr(getattr(b, "mkldnn", None), "conv", None)}
    return {k: v for k, v in found.items() if v is not None and hasattr(v, "fp32_precision")}


def _precision() -> dict[str, str]:
    return {name: str(obj.fp32_precision) for name, obj in _backends().items()}


def device_info(device: torch.device | str) -> dict[str, Any]:
    """The device and the numerical settings a result was computed with (for reports).

    Returns
    -------
    dict
        ``type`` ("cpu", "cuda", …), ``name`` (the GPU model, or the CPU architecture),
        ``torch`` and ``cuda`` (versions; ``cuda`` is ``None`` on a CPU build),
        ``fp32_precision`` (torch's float32 precision switch per backend: ``"ieee"`` full
        precision, ``"tf32"`` TF32, ``"none"`` the backend's default) and ``tf32_matmul``
        (whether float32 matrix products on CUDA may use TF32: inside :func:`exact_matmul`, as
        every Monte-Carlo chunk runs, they may not).
    """
    device = torch.device(device)
    precision = _precision()
    return {
        "type": device.type,
        "name": _device_name(device),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "fp32_precision": precision,
        "tf32_matmul": precision.get("cuda_matmul") == "tf32",
    }


def device_fingerprint(device: torch.device | str) -> dict[str, Any]:
    """What must not change for a run to resume from its checkpoint with the same bits: the device
    type, the GPU model (CUDA's random streams depend on it) and the torch and CUDA versions.

    The CPU model is left out: CPU streams are the same on every CPU, and a CPU run resumed on
    another CPU model gives valid numbers that may differ in the last bits (vectorised kernels).
    """
    device = torch.device(device)
    return {"device": device.type,
            "gpu": _device_name(device) if device.type == "cuda" else None,
            "torch": str(torch.__version__),
            "cuda": torch.version.cuda if device.type == "cuda" else None}


_PRECISION_LOCK = threading.Lock()
_PRECISION_USERS = 0
_PRECISION_SAVED: dict[str, str] = {}


@contextmanager
def exact_matmul() -> Iterator[None]:
    """Full-precision float32 products inside the block: every backend's ``fp32_precision`` is
    ``"ieee"`` (no TF32 on CUDA matmuls and cuDNN, no reduced precision in oneDNN).

    The settings are process-wide; nested and concurrent blocks (chunks on a thread pool) share
    one save and restore: the last block to leave restores what the caller had. Only torch's
    ``fp32_precision`` switches are touched (mixing them with the legacy ``allow_tf32`` flags is
    an error in recent torch).
    """
    global _PRECISION_USERS
    with _PRECISION_LOCK:
        if _PRECISION_USERS == 0:
            _PRECISION_SAVED.clear()
            for name, obj in _backends().items():
                _PRECISION_SAVED[name] = str(obj.fp32_precision)
                if _PRECISION_SAVED[name] != "ieee":
                    obj.fp32_precision = "ieee"
        _PRECISION_USERS += 1
    try:
        yield
    finally:
        with _PRECISION_LOCK:
            _PRECISION_USERS -= 1
            if _PRECISION_USERS == 0:
                objs = _backends()
                for name, value in _PRECISION_SAVED.items():
                    if name in objs and str(objs[name].fp32_precision) != value:
                        objs[name].fp32_precision = value
                _PRECISION_SAVED.clear()


# glibc's mallopt parameters (malloc.h) and its defaults.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_TRIM, _DEFAULT_MMAP = 128 * 1024, 128 * 1024
_STEADY_TRIM, _STEADY_MMAP = 2**30, 32 * 2**20  # 32 MB: glibc's largest mmap threshold
_ALLOC_LOCK = threading.Lock()
_ALLOC_USERS = 0


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or ``None`` elsewhere (or when ``SMETOOL_STEADY_ALLOCATOR=0``)."""
    if os.environ.get("SMETOOL_STEADY_ALLOCATOR", "1") == "0":
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


@contextmanager
def steady_allocator() -> Iterator[None]:
    """Keep freed CPU memory for reuse inside the block (glibc only; elsewhere a no-op).

    A time loop frees and allocates the same tensors every step. With glibc's defaults, blocks
    above the mmap threshold are mapped afresh and freed memory at the top of the heap is given
    back to the system, so each step page-faults its tensors in again: on the dropout SME at
    1,500 paths that is 70 % of a CPU step (measured: the Hessian–vector product 70 → 20 ms).
    Inside the block tensors up to 32 MB come from the heap and the heap is not trimmed below
    1 GB; on leaving, glibc's default thresholds come back (the heap is trimmed at the next
    free). CUDA memory is untouched (torch caches it already). Set the environment variable
    ``SMETOOL_STEADY_ALLOCATOR=0`` to leave the allocator alone.
    """
    global _ALLOC_USERS
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    with _ALLOC_LOCK:
        if _ALLOC_USERS == 0:
            mallopt(_M_MMAP_THRESHOLD, _STEADY_MMAP)
            mallopt(_M_TRIM_THRESHOLD, _STEADY_TRIM)
        _ALLOC_USERS += 1
    try:
        yield
    finally:
        with _ALLOC_LOCK:
            _ALLOC_USERS -= 1
            if _ALLOC_USERS == 0:
                mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
                mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory(device: torch.device | str) -> int | None:
    """Bytes a computation can still allocate on ``device``, or ``None`` when unknown.

    CUDA: the driver's free memory (:func:`torch.cuda.mem_get_info`) plus what torch's caching
    allocator holds unused. CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux); ``None``
    elsewhere.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, cached))
    if device.type == "cpu":
        return _meminfo_available()
    return None


class PeakMemory(TorchDispatchMode):
    """Counts the bytes of the tensors created inside the block that are alive at once.

    Every operator output is followed to the release of its storage, so ``peak`` is the largest
    number of bytes the block's own tensors held at one time, on any device (views share their
    base's storage and are counted once). Tensors made before the block are not counted.

    Examples
    --------
    >>> with PeakMemory() as mem:
    ...     a = torch.empty(1000, dtype=torch.float64)
    ...     b = a * 2.0
    ...     del a
    >>> mem.peak
    16000
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo.disable unless told otherwise: that
        # imports dynamo (seconds) and adds a frame hook to every operator; this mode never runs
        # under torch.compile, so it opts out.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: dict[int, int] = {}

    def _release(self, key: int, size: int) -> None:
        if self._seen.pop(key, None) is not None:
            self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self._seen:
                continue
            self._seen[key] = size
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, size)
        return out


def measure_bytes_per_path(run: Callable[[int], Any], paths: int = 2) -> int:
    """The memory a computation allocates per path: the growth of :class:`PeakMemory`'s peak from
    ``run(paths)`` to ``run(2 · paths)``, divided by ``paths`` (what every path shares cancels).

    ``run(n)`` must do on ``n`` paths what a chunk does per path (e.g. one step of a scheme, which
    is the working memory of the whole loop); what it returns is dropped after the measurement.
    """
    peaks = []
    for n in (paths, 2 * paths):
        with PeakMemory() as mem:
            out = run(n)
            del out
        peaks.append(mem.peak)
    return max(1, math.ceil((peaks[1] - peaks[0]) / paths))


def format_bytes(n: float) -> str:
    """``n`` bytes in KB, MB, GB or TB (powers of 1024), three significant digits."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TB"


_FUNCTORCH_LOCK = threading.RLock()


def functorch_exclusive(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` holding the process-wide lock of :mod:`torch.func` transforms.

    Two threads inside ``torch.func`` transforms (``vmap``, ``grad``, ``jvp``, ``jacrev``,
    ``hessian``) at once corrupt the heap or trip functorch's interpreter assertions (measured with
    torch 2.13: a thread pool running two chunks of the dropout plug-in with control variates, or
    of ``dropout-net``, crashed in every try). Chunks on a threaded executor therefore take turns
    inside the transforms and run everything else in parallel; process workers are unaffected.
    Re-entrant: a locked function may call another.
    """
    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _FUNCTORCH_LOCK:
            if _JVP_DECOMPOSITIONS not in sys.modules:
                load_jvp_decompositions()
            return fn(*args, **kwargs)
    return locked


_JVP_DECOMPOSITIONS = "torch._decomp.decompositions_for_jvp"


def load_jvp_decompositions() -> None:
    """Import torch's forward-mode AD decompositions, without the warning their import gives.

    The first ``torch.func.jvp`` (or ``make_dual``) imports
    ``torch._decomp.decompositions_for_jvp``, which builds its tables with ``torch.jit.script``
    and so warns "`torch.jit.script` is deprecated" once per process: a ``DeprecationWarning``
    under torch 2.13 (hidden by default), a ``FutureWarning`` under 2.14 (printed by every
    ``smetool verify``). It is torch's own use, nothing a user can act on: that one message is
    silenced for that one import; every other warning, smetool's included, is untouched. A torch
    without the module is fine (nothing to load).
    """
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                    category=category)
        try:
            importlib.import_module(_JVP_DECOMPOSITIONS)
        except ImportError:
            pass
