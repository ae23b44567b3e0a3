"""What :func:`~smetool.algorithms.derive.derive_sme` and its checks share: the update's
contract and exact sums over a :class:`~smetool.algorithms.noise_laws.FiniteNoise`."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ..device import functorch_exclusive
from .noise_laws import FiniteNoise, NoiseLaw, Tree, tree_map

__all__ = ["Update", "DifferentiableUpdate", "CHUNK_ELEMENTS", "Support", "check_order",
           "check_law", "evaluate"]

Update = Callable[[Tensor, Tree], Tensor]
"""``update(x, ξ) -> A``: states ``(N, D)`` and draws with ``N`` rows to increments ``(N, D)``."""

CHUNK_ELEMENTS = 1 << 21
"""The support of a :class:`FiniteNoise` is visited in blocks of at most this many ``A`` entries
(paths × support points × ``D``), which bounds the memory of every exact expectation."""


def check_order(order: int) -> int:
    """``order`` if it is 1 or 2 (the orders the theorem gives)."""
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"`order` must be 1 or 2; got {order!r}.")
    return int(order)


def check_law(noise: object) -> NoiseLaw:
    """``noise`` if it is a :class:`FiniteNoise` or a :class:`SampledNoise`."""
    if isinstance(noise, NoiseLaw):
        return noise
    hint = (" (a function, e.g. of lr: the law of ξ must not depend on lr)"
            if callable(noise) else "")
    raise TypeError("`noise` must be a smetool FiniteNoise or SampledNoise whose law does not "
                    f"depend on lr; got {type(noise).__name__}{hint}.")


def evaluate(update: Update, x: Tensor, xi: Tree) -> Tensor:
    """``update(x, ξ)``, checked to be ``(N, D)`` like ``x``."""
    out = update(x, xi)
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(x.shape):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"`update(x, ξ)` must return A(x, ξ) with the shape of x, "
                         f"{tuple(x.shape)}; got {shape}.")
    return out


class DifferentiableUpdate(abc.ABC):
    """An update that also gives its directional derivative in ``x`` in closed form.

    :func:`~smetool.algorithms.derive.derive_sme` differentiates a plain ``update`` with
    :func:`torch.func.jvp` (forward mode, several times the cost of ``A`` in eager torch); an
    update of this class is differentiated by :meth:`directional` instead. The tests check one
    against the other.
    """

    @abc.abstractmethod
    def __call__(self, x: Tensor, xi: Tree) -> Tensor:
        """``A(x, ξ)``, ``(N, D)``."""

    @abc.abstractmethod
    def directional(self, x: Tensor, xi: Tree, u: Tensor) -> Tensor:
        """``∇_x A(x, ξ) u``, ``(N, D)`` for directions ``u (N, D)``."""


class Support:
    """Exact sums over the support of a :class:`FiniteNoise`, batched over paths and support.

    The increments of the last state visited in one block are kept (a scheme evaluates the drift
    and the noise at the same, unmodified tensor), so the noise costs no second pass there.
    """

    def __init__(self, update: Update, law: FiniteNoise):
        self.update, self.law = update, law
        self.noise_dim = law.size
        self._memo: tuple[Tensor, int, Tensor] | None = None

    def rows(self, x: Tensor) -> Iterator[tuple[Tensor, Tree, Tensor, Tensor]]:
        """``(x rows (P c, D), ξ (P c rows), w (c,), index (c,))`` over blocks of the support;
        row ``p c + j`` is path ``p`` with support point ``index[j]``."""
        P, D = x.shape
        size = max(1, CHUNK_ELEMENTS // max(1, P * D))
        for index in self.law.chunks(size):
            c = index.numel()
            xi = self.law.take(index, dtype=x.dtype, device=x.device)
            xi = tree_map(lambda leaf: leaf.repeat(P, *([1] * (leaf.ndim - 1))), xi)
            w = self.law.weights_at(index).to(dtype=x.dtype, device=x.device)
            yield x.repeat_interleave(c, dim=0), xi, w, index

    def blocks(self, x: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(A (P, c, D), w (c,), index (c,))`` over blocks of the support."""
        memo = self._memo
        if memo is not None and memo[0] is x and memo[1] == x._version:
            yield memo[2], self.law.weights_at(torch.arange(self.law.size)).to(memo[2]), \
                torch.arange(self.law.size)
            return
        P, D = x.shape
        for rows, xi, w, index in self.rows(x):
            A = evaluate(self.update, rows, xi).reshape(P, -1, D)
            if index.numel() == self.law.size and not _transformed(x):
                self._memo = (x, x._version, A)
            yield A, w, index

    def mean(self, x: Tensor) -> Tensor:
        """``b₀(x) = Σ_i w_i A(x, ξ_i)``, ``(P, D)``."""
        total = torch.zeros_like(x)
        for A, w, _ in self.blocks(x):
            total = total + torch.einsum("pcd,c->pd", A, w)
        return total

    def mean_and_product(self, x: Tensor, dW: Tensor) -> tuple[Tensor, Tensor]:
        """``b₀`` and ``F dW = Σ_i √w_i (A_i − b₀) dW_i`` in one pass, both ``(P, D)``."""
        mean = torch.zeros_like(x)
        prod = torch.zeros_like(x)
        weight = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        for A, w, index in self.blocks(x):
            mean = mean + torch.einsum("pcd,c->pd", A, w)
            z = dW[:, index.to(dW.device)] * w.sqrt()
            prod = prod + torch.einsum("pcd,pc->pd", A, z)
            weight = weight + z.sum(dim=1, keepdim=True)
        return mean, prod - mean * weight

    def factor(self, x: Tensor) -> Tensor:
        """``F = [√w_i (A_i − b₀)]_i``, ``(P, D, S)``: ``F Fᵀ = Σ`` exactly."""
        mean = self.mean(x)
        cols = [((A - mean.unsqueeze(1)) * w.sqrt().unsqueeze(-1)).transpose(1, 2)
                for A, w, _ in self.blocks(x)]
        return torch.cat(cols, dim=2)

    def covariance(self, x: Tensor) -> Tensor:
        """``Σ(x) = Σ_i w_i (A_i − b₀)(A_i − b₀)ᵀ``, ``(P, D, D)``."""
        mean = self.mean(x)
        total = x.new_zeros(x.shape[0], x.shape[1], x.shape[1])
        for A, w, _ in self.blocks(x):
            c = A - mean.unsqueeze(1)
            total = total + torch.bmm((c * w.unsqueeze(-1)).transpose(1, 2), c)
        return total

    def directional(self, x: Tensor, u: Tensor) -> Tensor:
        """``(∇b₀)(x) u = Σ_i w_i ∇A(x, ξ_i) u``, ``(P, D)``: by the update's own
        :meth:`DifferentiableUpdate.directional`, else one :func:`torch.func.jvp` of the mean."""
        if not isinstance(self.update, DifferentiableUpdate):
            return functorch_exclusive(torch.func.jvp)(self._mean_uncached, (x,), (u,))[1]
        P, D = x.shape
        total = torch.zeros_like(x)
        for rows, xi, w, index in self.rows(x):
            du = self.update.directional(rows, xi, u.repeat_interleave(index.numel(), dim=0))
            total = total + torch.einsum("pcd,c->pd", du.reshape(P, -1, D), w)
        return total

    def _mean_uncached(self, x: Tensor) -> Tensor:
        total = torch.zeros_like(x)
        P, D = x.shape
        for rows, xi, w, _ in self.rows(x):
            A = evaluate(self.update, rows, xi).reshape(P, -1, D)
            total = total + torch.einsum("pcd,c->pd", A, w)
        return total


def _transformed(x: Tensor) -> bool:
    """Whether ``x`` is a :mod:`torch.func` wrapper (a value inside a transform: never kept)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)
