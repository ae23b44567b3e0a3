"""The Itô Milstein scheme for diagonal, scalar and additive noise."""

from __future__ import annotations

import torch
from torch import Tensor

from ..bibliography import KLOEDEN_PLATEN_1992
from ..device import functorch_exclusive
from ..noise import apply_diffusion
from ..sde import NoiseKind
from .base import Solver

__all__ = ["Milstein"]


def _reaches_another_leaf(output: Tensor, leaf: Tensor) -> bool:
    """Whether the autograd graph of ``output`` reaches a tensor that requires grad other than
    ``leaf`` (a parameter of the diffusion, or anything computed from one)."""
    stack, seen = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None and variable is not leaf:
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False


def _diagonal_correction(sde, t: float, x: Tensor, half_v: Tensor) -> tuple[Tensor, Tensor]:
    """``σ(t, x)`` and ``σ_i ∂_iσ_i · ½(ΔW_i² − h)`` for DIAGONAL noise, by one vector–Jacobian
    product: under the diagonal contract ``Σ_i (σ_i v_i) ∂σ_i/∂x_k = σ_k v_k ∂_kσ_k``.

    The derivative is taken with respect to a detached copy of ``x`` unless ``x`` itself is part
    of an autograd graph. Its graph is kept (``create_graph``) exactly when a gradient can flow:
    grad mode is on and either ``x`` requires grad or the diffusion depends on a tensor that does
    (a parameter). Detaching in that case would drop ``∂/∂θ`` of both the noise term and the
    correction while the result still requires grad — a silently missing gradient. Otherwise
    everything is detached, so Monte-Carlo runs build no graph.
    """
    grad_on = torch.is_grad_enabled()
    with torch.enable_grad():
        track_x = grad_on and x.requires_grad
        xg = x if track_x else x.detach().requires_grad_(True)
        g = sde.diffusion(t, xg)
        keep = grad_on and (track_x or _reaches_another_leaf(g, xg))
        correction = None
        if g.requires_grad:
            (correction,) = torch.autograd.grad(
                g, xg, grad_outputs=(g if keep else g.detach()) * half_v, create_graph=keep,
                allow_unused=True,
            )
    if not keep:
        g = g.detach()
    if correction is None:  # σ does not depend on x (e.g. torch.ones_like(x)): ∂σ = 0
        correction = torch.zeros_like(x)
    return g, correction


class Milstein(Solver):
    """Itô Milstein: Euler–Maruyama plus ``½ (∂σ) σ (ΔW² − h)``; strong order 1, weak order 1.

    * DIAGONAL noise (``σ_i`` depends on ``x_i`` only — the commutative case that needs no Lévy
      areas): the correction is ``½ σ_i ∂_i σ_i (ΔW_i² − h)``.
    * SCALAR noise: ``½ ((∂σ) σ)_i (ΔW² − h)`` with the directional derivative ``Σ_k σ_k ∂_k σ_i``.
    * ADDITIVE noise: the correction vanishes and the scheme is Euler–Maruyama.

    The derivative comes from ``sde.diffusion_derivative(t, x)`` when the SDE defines it, otherwise
    from autograd (one vector–Jacobian product per step for diagonal noise, one Jacobian–vector
    product for scalar noise — ``(∂σ)σ``, not ``(∂σ)ᵀσ``, which differ when the Jacobian is not
    symmetric). General non-commutative noise needs Lévy areas; it is refused.

    Gradients flow through the scheme, the derivative term included, to ``x0`` and to every
    parameter of the drift and the diffusion (``torch.autograd`` builds the derivative's own graph
    when one of them requires grad); a user-supplied ``diffusion_derivative`` is differentiated
    as written.

    References
    ----------
    G. N. Milstein, "Approximate integration of stochastic differential equations", Theory Probab.
    Appl. 19 (1974). Kloeden & Platen (1992), §10.3.
    """

    name = "milstein"
    strong_order = 1.0
    weak_order = 1.0
    noise_kinds = frozenset({NoiseKind.DIAGONAL, NoiseKind.SCALAR, NoiseKind.ADDITIVE})
    needs_gaussian = True
    reference = "Milstein (1974); Kloeden & Platen (1992), §10.3"
    references = (KLOEDEN_PLATEN_1992,)
    alternative = "EulerMaruyama() (strong order 1/2) or PlatenWeak2() (weak order 2)"

    def step(self, sde, t, x, h, dW, generator):
        kind = sde.noise_kind
        drift = sde.drift(t, x)
        if kind is NoiseKind.ADDITIVE:
            return x + drift * h + apply_diffusion(sde, sde.diffusion(t, x), dW)
        half_v = 0.5 * (dW * dW - h)
        dg = sde.diffusion_derivative(t, x)
        if dg is not None:
            g = sde.diffusion(t, x)
            correction = g * dg * half_v if kind is NoiseKind.DIAGONAL else dg * half_v
        elif kind is NoiseKind.DIAGONAL:
            g, correction = _diagonal_correction(sde, t, x, half_v)
        else:
            g = sde.diffusion(t, x)
            _, dg_g = functorch_exclusive(torch.func.jvp)(lambda y: sde.diffusion(t, y), (x,), (g,))
            correction = dg_g * half_v
        return x + drift * h + g * dW + correction
