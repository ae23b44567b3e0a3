"""Hot tensor functions with an optional compiled twin, switched on per Monte-Carlo run.

A :class:`Kernel` wraps a pure tensor function (tensors in, tensors out, no generator, no host
synchronisation). Outside :func:`compiled_kernels` it is the eager function; inside
``compiled_kernels(True)`` it is :func:`torch.compile` of it (compiled on the first call, with
dynamic shapes so that the last, smaller chunk does not recompile). Random draws stay outside the
kernels: a generator call inside a compiled region would break the graph. The Monte-Carlo engine
turns compilation on per run (:attr:`smetool.MonteCarloOptions.compile`); compiled and eager
kernels agree to round-off, not bit for bit (a fused kernel may sum in another order).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["Kernel", "kernel", "compiled_kernels", "compiling"]

_COMPILE: contextvars.ContextVar[bool] = contextvars.ContextVar("smetool_compile", default=False)


@contextmanager
def compiled_kernels(enabled: bool = True) -> Iterator[None]:
    """Run the :class:`Kernel` functions compiled (``True``) or eager (``False``) in the block."""
    token = _COMPILE.set(bool(enabled))
    try:
        yield
    finally:
        _COMPILE.reset(token)


def compiling() -> bool:
    """Whether :class:`Kernel` functions run compiled here."""
    return _COMPILE.get()


class Kernel:
    """A pure tensor function that runs eager, or compiled inside :func:`compiled_kernels`.

    Parameters
    ----------
    fn : callable
        Tensors (and Python constants that do not change between calls: a changed float or int
        recompiles) to tensors.
    """

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self._compiled: Callable[..., Any] | None = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        if not _COMPILE.get():
            return self.fn(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=True)
        return self._compiled(*args)

    def __reduce__(self) -> str:  # pickled by name: a kernel is a module-level object
        return str(self.fn.__qualname__)

    def __repr__(self) -> str:
        return f"Kernel({self.fn.__qualname__})"


def kernel(fn: Callable[..., Any]) -> Kernel:
    """Decorator form of :class:`Kernel`."""
    return Kernel(fn)
