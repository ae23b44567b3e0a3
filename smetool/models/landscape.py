"""The loss landscape that the analyses measure: one contract, implemented once by every model.

A :class:`Landscape` is a training loss ``f(θ)`` batched over parameter vectors ``θ (P, D)``,
with what the analyses of :mod:`smetool.analysis` and the update rules of the plug-ins need of it:

* ``loss``, ``gradient``, Hessian–vector products in blocks ``V (P, s, D)`` and, where ``D`` is
  small, the dense Hessian :meth:`Landscape.hessian_matrix` (by default assembled from
  Hessian–vector products);
* the stochastic gradient of its data: :meth:`Landscape.draw_minibatch` draws the randomness ``γ``
  of one step (minibatch indices of a finite sum, or a Gaussian ``z`` of a noise model) and
  :meth:`Landscape.minibatch_gradient` evaluates ``∇f_γ(θ)`` at any point, with
  ``E_γ ∇f_γ = ∇f`` — so SGD, SAM and SignSGD are written once, against this contract, and run on
  a quadratic test problem or on a network alike;
* random initial points (:meth:`Landscape.random_init`) and, for networks, the first layer's
  units (:meth:`Landscape.units`, for condensation) and a classification accuracy.

:class:`FiniteSum` implements the stochastic gradient of a finite sum ``f = (1/n) Σ_i ℓ_i``:
``B`` indices drawn uniformly with replacement, and ``∇f_γ = (1/B) Σ_{j∈γ} ∇ℓ_j`` as a weighted
gradient ``Σ_i w_i ∇ℓ_i`` with ``w = counts / B`` (one backward pass, whatever ``B``).

References
----------
Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
algorithms I: mathematical foundations", JMLR 20 (2019) (minibatch gradients ``∇f_γ``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from ..checks import check_batch_size, check_positive_int
from ..device import functorch_exclusive

__all__ = ["Landscape", "FiniteSum", "Units", "identity_blocks", "block_hvp"]


@dataclass(frozen=True)
class Units:
    """The first layer's units of a network, for condensation.

    Attributes
    ----------
    weights : Tensor, (P, m, d)
        Each unit's input weights (bias appended where there is one).
    amplitude : Tensor, (P, m)
        Input-weight norm times the norm of the outgoing weights (the greedy clustering's order).
    antipodal : bool
        Whether ``w`` and ``−w`` are one feature (every activation odd, e.g. tanh).
    """

    weights: Tensor
    amplitude: Tensor
    antipodal: bool


def identity_blocks(P: int, D: int, start: int, stop: int, like: Tensor) -> Tensor:
    """Rows ``start … stop − 1`` of the identity, for every path: ``(P, stop − start, D)``."""
    eye = torch.zeros(stop - start, D, dtype=like.dtype, device=like.device)
    eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
    return eye.expand(P, -1, -1)


@functorch_exclusive
def block_hvp(fn: Callable[[Tensor], Tensor], theta: Tensor, V: Tensor) -> Tensor:
    """``∇²fn(θ_p) v`` for a scalar function of one path's ``θ (D,)`` and blocks ``V (P, s, D)``:
    the derivative of ``∇fn`` along each ``v`` (:func:`torch.func.jvp` of :func:`torch.func.grad`),
    ``(P, s, D)``."""
    if V.ndim != 3 or V.shape[0] != theta.shape[0] or V.shape[2] != theta.shape[1]:
        raise ValueError(f"`V` must have shape ({theta.shape[0]}, s, {theta.shape[1]}); got "
                         f"{tuple(V.shape)}.")

    def one(th: Tensor, v: Tensor) -> Tensor:
        return jvp(grad(fn), (th,), (v,))[1]

    return vmap(vmap(one, in_dims=(None, 0)))(theta, V)


class Landscape(abc.ABC):
    """A training loss ``f(θ)`` and its derivatives, batched over parameter vectors (module
    docstring).

    Attributes
    ----------
    label : str
        A short name for reports (``"mlp (digits[:64])"``).
    hessian_chunk : int
        Identity rows per Hessian–vector call when :meth:`hessian_matrix` is assembled from products.
    """

    label: str = ""
    hessian_chunk: int = 256

    @property
    @abc.abstractmethod
    def n_params(self) -> int:
        """``D``."""

    @abc.abstractmethod
    def loss(self, theta: Tensor) -> Tensor:
        """``f(θ)`` of parameter vectors ``(N, D) -> (N,)``."""

    @abc.abstractmethod
    def gradient(self, theta: Tensor) -> Tensor:
        """``∇f(θ)``, ``(P, D) -> (P, D)``."""

    @abc.abstractmethod
    def hvp(self, theta: Tensor, V: Tensor) -> Tensor:
        """``∇²f(θ_p) v`` for blocks ``V (P, s, D)`` at ``θ (P, D)``: ``(P, s, D)``."""

    @abc.abstractmethod
    def draw_minibatch(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                       device: torch.device | str) -> Any:
        """The randomness ``γ`` of one stochastic gradient per path (indexed by path along the
        first axis), drawn from ``generator`` only and independent of ``θ``."""

    @abc.abstractmethod
    def minibatch_gradient(self, theta: Tensor, batch: Any) -> Tensor:
        """``∇f_γ(θ)`` for the drawn ``γ = batch``, ``(P, D)``; ``E_γ ∇f_γ = ∇f``."""

    @abc.abstractmethod
    def random_init(self, generator: torch.Generator) -> Tensor:
        """One random initial point ``(D,)`` (float64), drawn from ``generator`` only."""

    def hessian_matrix(self, theta: Tensor) -> Tensor:
        """``∇²f(θ)``, ``(P, D, D)``: by default ``D`` Hessian–vector products with the identity,
        :attr:`hessian_chunk` rows at a time (exactly symmetrised)."""
        P, D = theta.shape
        rows = [self.hvp(theta, identity_blocks(P, D, a, min(a + self.hessian_chunk, D), theta))
                for a in range(0, D, self.hessian_chunk)]
        H = torch.cat(rows, dim=1)
        return 0.5 * (H + H.transpose(1, 2))

    def units(self, theta: Tensor) -> Units | None:
        """The first layer's units (:class:`Units`) of a network; ``None`` for a landscape that is
        not a network (no condensation to measure)."""
        return None

    def accuracy(self, theta: Tensor) -> Tensor | None:
        """Classification accuracy on the landscape's data, ``(P,)`` in ``[0, 1]``; ``None`` when
        the landscape is not a classifier."""
        return None

    def initial_points(self, n: int, seeds: list[int]) -> Tensor:
        """``n`` initial points ``(n, D)`` (float64), point ``s`` from
        ``torch.Generator().manual_seed(seeds[s])``."""
        n = check_positive_int(n, "n")
        if len(seeds) != n:
            raise ValueError(f"`seeds` must hold one seed per point ({n}); got {len(seeds)}.")
        return torch.stack([self.random_init(torch.Generator().manual_seed(int(s)))
                            for s in seeds]).to(torch.float64)


class FiniteSum(Landscape):
    """A landscape ``f = (1/n) Σ_i ℓ_i`` whose stochastic gradient is a minibatch of ``B`` points
    drawn uniformly with replacement (module docstring).

    Subclasses set ``batch_size`` (``None``: no minibatch law; a stochastic rule then refuses
    the landscape) and implement :attr:`n_points` and :meth:`weighted_gradient`.
    """

    batch_size: int | None = None

    @property
    @abc.abstractmethod
    def n_points(self) -> int:
        """``n``."""

    @abc.abstractmethod
    def weighted_gradient(self, theta: Tensor, weights: Tensor) -> Tensor:
        """``∇ Σ_i w_pi ℓ_i(θ_p)`` for weights ``(P, n)``, ``(P, D)`` (``w = 1/n``: ``∇f``)."""

    def _batch(self) -> int:
        if self.batch_size is None:
            raise ValueError(f"{self.label or type(self).__name__} has no minibatch size: build it "
                             "with `batch_size` (a stochastic gradient needs one); got None.")
        return check_batch_size(self.batch_size, self.n_points, type(self).__name__)

    def draw_minibatch(self, n_paths: int, generator: torch.Generator, *, dtype: torch.dtype,
                       device: torch.device | str) -> Tensor:
        """``B`` indices per path, uniform on ``{0, …, n−1}`` with replacement: ``(P, B)``."""
        return torch.randint(self.n_points, (n_paths, self._batch()), generator=generator,
                             device=device)

    def minibatch_gradient(self, theta: Tensor, batch: Tensor) -> Tensor:
        """``(1/B) Σ_{j∈γ} ∇ℓ_j(θ)``: the weighted gradient with ``w = counts / B``."""
        counts = torch.zeros(theta.shape[0], self.n_points, dtype=theta.dtype, device=theta.device)
        counts.scatter_add_(1, batch.to(theta.device),
                            torch.ones(batch.shape, dtype=theta.dtype, device=theta.device))
        return self.weighted_gradient(theta, counts / batch.shape[1])
