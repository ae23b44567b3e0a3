"""Mini-batch means: exact SME coefficients from the examples instead of the batches.

An update that averages per-example terms over its mini-batch,
``A(x, (ζ, i_1…i_B)) = (1/B) Σ_j a(x, (ζ, i_j))`` (mini-batch SGD; dropout SGD with one mask ``ζ``
shared by the batch), has moments that depend on the law of a single example only. With
``ā(ζ) = E_i a(x, (ζ, i))`` and ``b₀ = E_ζ ā``, the law of total covariance gives, exactly,

``Σ = c_B E_ζ Cov_i a(x, (ζ, i)) + Cov_ζ ā(ζ)``,

``c_B = 1/B`` for ``B`` examples drawn with replacement, ``(n − B)/(B (n − 1))`` for ``B``
distinct ones (the finite-population correction), and a factor ``F Fᵀ = Σ`` with the columns
``√(c_B w_ζ / n) (a(ζ, i) − ā(ζ))`` and ``√w_ζ (ā(ζ) − b₀)``. Its cost is ``S_ζ n`` evaluations
of ``a`` per path — for any ``B`` — against ``S_ζ C(n + B − 1, B)`` for enumerating the batches.
Declare the structure with :class:`BatchMean`; it is checked at the initial state.

References
----------
Q. Li, C. Tai, W. E, JMLR 20 (2019) (mini-batch SGD and its SME).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .derive_core import Support, Update
from .noise_laws import FiniteNoise, NoiseLaw, Tree

__all__ = ["BatchMean", "BatchMeanSupport", "support_for", "ExactSupport"]


class BatchMean:
    """Declares that ``update(x, ξ)`` is the mean over the mini-batch in ``ξ`` of its values on
    single examples: ``update(x, (ζ, I)) = (1/B) Σ_j update(x, (ζ, I[:, j:j+1]))`` for indices
    ``I (N, B)`` from :meth:`FiniteNoise.minibatches` (the last factor of the law).

    :func:`~smetool.algorithms.derive.derive_sme` then sums over the ``n`` examples instead of
    the batches (:class:`BatchMeanSupport`), exactly. The declaration is checked at ``x0``.

    Parameters
    ----------
    update : callable ``(x, ξ) -> A``
        Evaluated on batches (the discrete step) and on single examples (the SME).
    """

    def __init__(self, update: Update):
        if not callable(update):
            raise TypeError(f"BatchMean: `update` must be callable; got {type(update).__name__}.")
        self.update = update

    def __call__(self, x: Tensor, xi: Tree) -> Tensor:
        return self.update(x, xi)

    def __repr__(self) -> str:
        return f"BatchMean({self.update!r})"


def batch_factor(law: NoiseLaw) -> tuple[int, int, bool] | None:
    """``(n, B, replacement)`` of the mini-batch law that ends ``law``, else ``None``."""
    if not isinstance(law, FiniteNoise):
        return None
    return law.factors[-1].batch


class BatchMeanSupport:
    """The exact sums of :class:`Support` for a :class:`BatchMean` update (see the module).

    Parameters
    ----------
    update : BatchMean
    law : FiniteNoise
        Its last factor from :meth:`FiniteNoise.minibatches`.
    """

    def __init__(self, update: BatchMean, law: FiniteNoise):
        found = batch_factor(law)
        if found is None:
            raise ValueError("BatchMean: the noise law must end with FiniteNoise.minibatches(n, B) "
                             f"(the batch the update averages over); got {law!r}.")
        n, B, replacement = found
        self.law, self.update = law, update
        shared = law.factors[:-1]
        examples = FiniteNoise(torch.arange(n).unsqueeze(1))
        self.reduced = FiniteNoise.product(*shared, examples) if shared else examples
        self.n = n
        self.n_shared = math.prod(f.size for f in shared)
        self.c = 1.0 / B if replacement else (n - B) / (B * (n - 1) if n > 1 else 1.0)
        self.examples = Support(update.update, self.reduced)
        self.noise_dim = self.n_shared * n + self.n_shared

    def _terms(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``a (P, S_ζ, n, D)``, ``ā (P, S_ζ, D)``, ``b₀ (P, D)`` and ``w_ζ (S_ζ,)``."""
        P, D = x.shape
        a = torch.cat([A for A, _, _ in self.examples.blocks(x)], dim=1)
        a = a.reshape(P, self.n_shared, self.n, D)
        w = self.reduced.weights.to(a).reshape(self.n_shared, self.n).sum(dim=1)
        abar = a.mean(dim=2)
        return a, abar, torch.einsum("psd,s->pd", abar, w), w

    def mean(self, x: Tensor) -> Tensor:
        """``b₀(x)``, ``(P, D)``."""
        return self.examples.mean(x)

    def directional(self, x: Tensor, u: Tensor) -> Tensor:
        """``(∇b₀) u``, ``(P, D)``."""
        return self.examples.directional(x, u)

    def factor(self, x: Tensor) -> Tensor:
        """``F (P, D, S_ζ n + S_ζ)`` with ``F Fᵀ = Σ``: the within-``ζ`` columns, then the
        between-``ζ`` ones."""
        a, abar, mean, w = self._terms(x)
        P, D = x.shape
        within = (a - abar.unsqueeze(2)) * (self.c * w / self.n).sqrt()[None, :, None, None]
        between = (abar - mean.unsqueeze(1)) * w.sqrt()[None, :, None]
        return torch.cat([within.reshape(P, -1, D), between], dim=1).transpose(1, 2)

    def mean_and_product(self, x: Tensor, dW: Tensor) -> tuple[Tensor, Tensor]:
        """``b₀`` and ``F dW``, both ``(P, D)``, without forming ``F``."""
        a, abar, mean, w = self._terms(x)
        P = x.shape[0]
        k = self.n_shared * self.n
        z_in = dW[:, :k].reshape(P, self.n_shared, self.n) * (self.c * w / self.n).sqrt()[:, None]
        z_out = dW[:, k:] * w.sqrt()
        within = torch.einsum("psid,psi->pd", a - abar.unsqueeze(2), z_in)
        between = torch.einsum("psd,ps->pd", abar - mean.unsqueeze(1), z_out)
        return mean, within + between

    def covariance(self, x: Tensor) -> Tensor:
        """``Σ = c_B E_ζ Cov_i a + Cov_ζ ā``, ``(P, D, D)``."""
        a, abar, mean, w = self._terms(x)
        P, D = x.shape
        d_in = (a - abar.unsqueeze(2)).reshape(P, -1, D)
        d_out = abar - mean.unsqueeze(1)
        w_in = (w * (self.c / self.n)).repeat_interleave(self.n)
        within = torch.bmm((d_in * w_in.unsqueeze(-1)).transpose(1, 2), d_in)
        return within + torch.bmm((d_out * w.unsqueeze(-1)).transpose(1, 2), d_out)


ExactSupport = Support | BatchMeanSupport


def support_for(update: Update, law: FiniteNoise) -> ExactSupport:
    """The exact sums for ``update`` over ``law``: over the examples for a :class:`BatchMean`
    update, over the whole support otherwise."""
    if isinstance(update, BatchMean):
        return BatchMeanSupport(update, law)
    return Support(update, law)
