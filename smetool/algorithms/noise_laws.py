"""The laws of the noise ``ξ`` of an update ``x_{k+1} = x_k + lr · A(x_k, ξ_k)``, for
:func:`~smetool.algorithms.derive.derive_sme`.

Two kinds:

* :class:`FiniteNoise` — a law of finite support, enumerated exactly: every mini-batch of a small
  data set (:meth:`FiniteNoise.minibatches`), every dropout mask of a small layer
  (:meth:`FiniteNoise.bernoulli_masks`), or a product of such laws
  (:meth:`FiniteNoise.product`: dropout *and* a mini-batch). Expectations over it are exact sums.
* :class:`SampledNoise` — any law you can draw from; expectations are estimated from draws.

A draw is a *tree*: a tensor whose first axis runs over paths, or a tuple of trees (a product of
laws gives the tuple of its factors' draws). The update receives it as it is.

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient algorithms
I: mathematical foundations", JMLR 20 (2019) — the law of ``ξ`` must not depend on ``lr``.
"""

from __future__ import annotations

import abc
import inspect
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..checks import check_keep_prob, check_positive_int

__all__ = ["NoiseLaw", "FiniteNoise", "SampledNoise", "tree_map", "tree_leaves", "MAX_SUPPORT"]

MAX_SUPPORT = 1 << 24
"""The largest support a :class:`FiniteNoise` may enumerate (every expectation visits all of it)."""

Tree = Any
"""A tensor with the paths (or support points) on its first axis, or a tuple of trees."""


def tree_leaves(tree: Tree) -> list[Tensor]:
    """The tensors of a tree, depth first."""
    if isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, tuple):
        return [leaf for sub in tree for leaf in tree_leaves(sub)]
    raise TypeError(f"a noise value must be a tensor or a tuple of them; got {type(tree).__name__}.")


def tree_map(fn: Callable[[Tensor], Tensor], tree: Tree) -> Tree:
    """``fn`` applied to every tensor of a tree, keeping its structure."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, tuple):
        return tuple(tree_map(fn, sub) for sub in tree)
    raise TypeError(f"a noise value must be a tensor or a tuple of them; got {type(tree).__name__}.")


def _cast(leaf: Tensor, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    # Floating values follow the state's dtype; indices (integers, booleans) keep theirs.
    return leaf.to(device=device, dtype=dtype if leaf.is_floating_point() else leaf.dtype)


class NoiseLaw(abc.ABC):
    """The law of ``ξ``, drawn afresh at every step, independent of the state and of ``lr``."""

    exact: bool = False
    """Whether expectations over the law are exact sums (:class:`FiniteNoise`)."""

    @abc.abstractmethod
    def draw(self, n: int, generator: torch.Generator, *, dtype: torch.dtype,
             device: torch.device | str | None = None) -> Tree:
        """``n`` independent draws (a tree with ``n`` rows), from ``generator`` only."""


class FiniteNoise(NoiseLaw):
    """A law of finite support ``{ξ_1, …, ξ_S}`` with probabilities ``w_i``, enumerated exactly.

    Parameters
    ----------
    values : Tensor or tuple of Tensor
        The support: a tensor ``(S, ...)`` or a tuple (nested tuples allowed) of tensors with the
        same first size ``S``; floating values are cast to the state's dtype when drawn, integer
        values (indices) are kept.
    weights : Tensor or sequence, (S,), optional
        ``w_i ≥ 0`` summing to 1 (to 1e-9); default uniform.

    Raises
    ------
    ValueError
        Empty or ragged support, non-finite values, weights of the wrong length, negative or not
        summing to 1, a support larger than :data:`MAX_SUPPORT`.

    Examples
    --------
    All masks of a 3-unit dropout layer with keep probability 0.9, times every single-example
    mini-batch of 4 data points (``8 × 4`` support points, each draw a tuple ``(mask, batch)``):

    >>> law = FiniteNoise.product(FiniteNoise.bernoulli_masks(3, 0.9),
    ...                           FiniteNoise.minibatches(4, 1))
    >>> law.size
    32
    """

    exact = True

    def __init__(self, values: Tree, weights: Any = None):
        leaves = tree_leaves(values)
        if not leaves or leaves[0].ndim == 0 or leaves[0].shape[0] == 0:
            raise ValueError("FiniteNoise: `values` must hold at least one support point (a "
                             "tensor of shape (S, ...) with S ≥ 1).")
        size = int(leaves[0].shape[0])
        if any(leaf.ndim == 0 or leaf.shape[0] != size for leaf in leaves):
            raise ValueError("FiniteNoise: every tensor of `values` must have the same first size "
                             f"S; got {[tuple(leaf.shape) for leaf in leaves]}.")
        if size > MAX_SUPPORT:
            raise ValueError(f"FiniteNoise: the support must have at most {MAX_SUPPORT} points; "
                             f"got {size}.")
        for leaf in leaves:
            if leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
                raise ValueError("FiniteNoise: `values` must be finite; got NaN or inf.")
        self._values = values
        self._size = size
        self._weights = self._check_weights(weights, size)
        self._factors: tuple[FiniteNoise, ...] = (self,)
        self.batch: tuple[int, int, bool] | None = None

    @staticmethod
    def _check_weights(weights: Any, size: int) -> Tensor | None:
        if weights is None:
            return None
        w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
        if w.shape != (size,):
            raise ValueError(f"FiniteNoise: `weights` must have shape ({size},) like the support; "
                             f"got {tuple(w.shape)}.")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError("FiniteNoise: `weights` must be finite and non-negative; got "
                             f"a minimum of {float(w.min()):g}.")
        total = float(w.sum())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"FiniteNoise: `weights` must sum to 1; got {total!r}.")
        return w / total

    # ----------------------------------------------------------------------------- structure
    @property
    def size(self) -> int:
        """``S``, the number of support points."""
        return self._size

    @property
    def factors(self) -> tuple[FiniteNoise, ...]:
        """The independent laws this one is the product of (itself when it is not a product)."""
        return self._factors

    @property
    def weights(self) -> Tensor:
        """``w (S,)``, float64 on the CPU."""
        return self.weights_at(torch.arange(self._size))

    def weights_at(self, index: Tensor) -> Tensor:
        """``w_i`` for support indices ``index`` (float64, CPU)."""
        index = index.cpu()
        if len(self._factors) > 1:
            out = torch.ones(index.shape, dtype=torch.float64)
            for factor, sub in zip(self._factors, self._split(index)):
                out = out * factor.weights_at(sub)
            return out
        if self._weights is None:
            return torch.full(index.shape, 1.0 / self._size, dtype=torch.float64)
        return self._weights[index]

    def _split(self, index: Tensor) -> list[Tensor]:
        """Indices into the factors of a product (the last factor varies fastest)."""
        out = []
        for factor in reversed(self._factors):
            out.append(index % factor.size)
            index = torch.div(index, factor.size, rounding_mode="floor")
        return out[::-1]

    def take(self, index: Tensor, *, dtype: torch.dtype, device: torch.device | str | None = None
             ) -> Tree:
        """The support points ``ξ_{index}`` (a tree with ``len(index)`` rows)."""
        if len(self._factors) > 1:
            return tuple(f.take(sub, dtype=dtype, device=device)
                         for f, sub in zip(self._factors, self._split(index)))
        return tree_map(lambda leaf: _cast(leaf[index.to(leaf.device)], dtype, device), self._values)

    def chunks(self, size: int) -> Iterator[Tensor]:
        """The support indices in consecutive blocks of at most ``size``."""
        for start in range(0, self._size, size):
            yield torch.arange(start, min(start + size, self._size))

    # ----------------------------------------------------------------------------- drawing
    def draw(self, n: int, generator: torch.Generator, *, dtype: torch.dtype,
             device: torch.device | str | None = None) -> Tree:
        """``n`` draws: each factor of a product drawn independently, by inverse CDF (one
        ``torch.rand`` per factor, or ``torch.randint`` for a uniform law)."""
        n = check_positive_int(n, "n")
        if len(self._factors) > 1:
            return tuple(f.draw(n, generator, dtype=dtype, device=device) for f in self._factors)
        gen_device = generator.device
        if self._weights is None:
            index = torch.randint(self._size, (n,), generator=generator, device=gen_device)
        else:
            cdf = torch.cumsum(self._weights, 0).to(gen_device)
            u = torch.rand(n, generator=generator, dtype=torch.float64, device=gen_device)
            index = torch.searchsorted(cdf, u, right=True).clamp_max(self._size - 1)
        return self.take(index, dtype=dtype, device=device)

    # ----------------------------------------------------------------------------- builders
    @classmethod
    def product(cls, *laws: FiniteNoise) -> FiniteNoise:
        """The law of independent ``(ξ^1, …, ξ^J)``, ``ξ^j`` from ``laws[j]``: support the product
        of the supports (``S = ∏ S_j``, index ``i`` of the last law varying fastest), weights the
        products of the weights. A draw is the tuple of the factors' draws."""
        if len(laws) < 2 or not all(isinstance(law, FiniteNoise) for law in laws):
            raise TypeError("FiniteNoise.product: give two or more FiniteNoise laws; got "
                            f"{[type(law).__name__ for law in laws]}.")
        factors = tuple(f for law in laws for f in law.factors)
        size = math.prod(f.size for f in factors)
        if size > MAX_SUPPORT:
            raise ValueError(f"FiniteNoise.product: the support must have at most {MAX_SUPPORT} "
                             f"points; got {size} = {' × '.join(str(f.size) for f in factors)}.")
        out = cls.__new__(cls)
        out._values, out._size, out._weights, out._factors = None, size, None, factors
        out.batch = None
        return out

    @classmethod
    def bernoulli_masks(cls, shape: int | tuple[int, ...], keep_prob: float) -> FiniteNoise:
        """Every dropout mask of ``shape``: entries ``b/p`` with independent ``b ~ Bernoulli(p)``
        (``p = keep_prob``, the probability of *keeping*), ``2^K`` support points for ``K`` units.

        Raises
        ------
        ValueError
            ``keep_prob`` outside ``(0, 1]``, or more than 24 units.
        """
        p = check_keep_prob(keep_prob)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        units = math.prod(shape)
        if units < 1 or units > 24:
            raise ValueError(f"FiniteNoise.bernoulli_masks: `shape` must hold 1 to 24 units "
                             f"(2^units masks); got {shape} ({units} units).")
        bits = (torch.arange(1 << units).unsqueeze(1) >> torch.arange(units)) & 1
        kept = bits.sum(dim=1)
        weights = p ** kept.double() * (1.0 - p) ** (units - kept).double()
        values = (bits.double() / p).reshape(1 << units, *shape)
        return cls(values, weights / weights.sum())

    @classmethod
    def minibatches(cls, n: int, batch_size: int, *, replacement: bool = True) -> FiniteNoise:
        """Every mini-batch of ``batch_size`` indices into ``n`` data points, as integer indices
        ``(S, B)``.

        With ``replacement`` (the law of ``B`` independent uniform indices, as
        :class:`~smetool.algorithms.sgd.FiniteSumSGD`) the support is the multisets, each with its
        multinomial probability, ``S = C(n + B − 1, B)``; without, the ``C(n, B)`` subsets,
        uniform. An update that averages over its batch depends only on the multiset, so this is
        exact. Declare such an update with :class:`~smetool.algorithms.derive_core.BatchMean` and
        the expectations visit the ``n`` examples instead of the ``S`` batches.

        The law remembers ``(n, B, replacement)`` in :attr:`batch` (``None`` for other laws).
        """
        n = check_positive_int(n, "n")
        batch_size = check_positive_int(batch_size, "batch_size")
        if not replacement and batch_size > n:
            raise ValueError(f"FiniteNoise.minibatches: `batch_size` must be ≤ n = {n} without "
                             f"replacement; got {batch_size}.")
        count = math.comb(n + batch_size - 1, batch_size) if replacement else math.comb(n, batch_size)
        if count > MAX_SUPPORT:
            raise ValueError(f"FiniteNoise.minibatches: {count} batches exceed the {MAX_SUPPORT} "
                             "a finite law may enumerate; use SampledNoise.")
        combos = (itertools.combinations_with_replacement(range(n), batch_size) if replacement
                  else itertools.combinations(range(n), batch_size))
        index = torch.tensor(list(combos), dtype=torch.long).reshape(count, batch_size)
        if not replacement:
            law = cls(index)
            law.batch = (n, batch_size, False)
            return law
        # P(multiset) = B! / ∏_k c_k! · n^{-B}, c_k the multiplicities.
        log_w = torch.full((count,), math.lgamma(batch_size + 1) - batch_size * math.log(n),
                           dtype=torch.float64)
        for k in range(n):
            c = (index == k).sum(dim=1).double()
            log_w -= torch.lgamma(c + 1.0)
        weights = log_w.exp()
        law = cls(index, weights / weights.sum())
        law.batch = (n, batch_size, True)
        return law

    def __repr__(self) -> str:
        if len(self._factors) > 1:
            return " × ".join(repr(f) for f in self._factors)
        kind = "uniform" if self._weights is None else "weighted"
        return f"FiniteNoise(S={self._size}, {kind})"


class SampledNoise(NoiseLaw):
    """A law known through draws: ``draw(n, generator, *, dtype, device)`` returns ``n``
    independent values of ``ξ`` (a tensor or tuple of tensors with ``n`` rows).

    Expectations over it are estimated from draws (:func:`~smetool.algorithms.derive.derive_sme`
    keeps them unbiased). The law must not depend on ``lr`` (nor on the state): a ``draw`` that
    takes an ``lr`` argument is refused.

    Raises
    ------
    TypeError
        ``draw`` not callable.
    ValueError
        ``draw`` takes ``lr``.

    Examples
    --------
    Label noise ``ξ ~ N(0, 0.5²)`` on each of 8 targets:

    >>> law = SampledNoise(lambda n, g, *, dtype, device:
    ...                    0.5 * torch.randn(n, 8, generator=g, dtype=dtype, device=device))
    """

    exact = False

    def __init__(self, draw: Callable[..., Tree]):
        if not callable(draw):
            raise TypeError(f"SampledNoise: `draw` must be callable (n, generator, *, dtype, "
                            f"device) -> ξ; got {type(draw).__name__}.")
        try:
            params = inspect.signature(draw).parameters
        except (TypeError, ValueError):  # a builtin without a signature: nothing to inspect
            params = {}  # type: ignore[assignment]
        if "lr" in params:
            raise ValueError("SampledNoise: the law of ξ must not depend on the learning rate "
                             "(Li, Tai & E's theorem assumes it); got a `draw` that takes `lr`.")
        self._draw = draw

    def draw(self, n: int, generator: torch.Generator, *, dtype: torch.dtype,
             device: torch.device | str | None = None) -> Tree:
        n = check_positive_int(n, "n")
        out = self._draw(n, generator, dtype=dtype, device=device)
        leaves = tree_leaves(out)
        if not leaves or any(leaf.ndim == 0 or leaf.shape[0] != n for leaf in leaves):
            raise ValueError(f"SampledNoise: `draw(n={n}, ...)` must return a tensor (or tuple of "
                             f"tensors) with {n} rows; got {[tuple(t.shape) for t in leaves]}.")
        return out

    def __repr__(self) -> str:
        return f"SampledNoise({getattr(self._draw, '__name__', type(self._draw).__name__)})"
