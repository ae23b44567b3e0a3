"""The Itô Milstein scheme for diagonal, scalar and additive noise."""

from __future__ import annotations

import torch

from ..bibliography import KLOEDEN_PLATEN_1992
from ..noise import apply_diffusion
from ..sde import NoiseKind
from .base import Solver

__all__ = ["Milstein"]


class Milstein(Solver):
    """Itô Milstein: Euler–Maruyama plus ``½ (∂σ) σ (ΔW² − h)``; strong order 1, weak order 1.

    * DIAGONAL noise (``σ_i`` depends on ``x_i`` only — the commutative case that needs no Lévy
      areas): the correction is ``½ σ_i ∂_i σ_i (ΔW_i² − h)``.
    * SCALAR noise: ``½ ((∂σ) σ)_i (ΔW² − h)`` with the directional derivative ``Σ_k σ_k ∂_k σ_i``.
    * ADDITIVE noise: the correction vanishes and the scheme is Euler–Maruyama.

    The derivative comes from ``sde.diffusion_derivative(t, x)`` when the SDE defines it, otherwise
    from autograd (one vector–Jacobian product per step for diagonal noise, one Jacobian–vector
    product for scalar noise). General non-commutative noise needs Lévy areas; it is refused.

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
        custom = getattr(sde, "diffusion_derivative", None)
        if custom is not None:
            g = sde.diffusion(t, x)
            dg = custom(t, x)
            correction = g * dg * half_v if kind is NoiseKind.DIAGONAL else dg * half_v
        elif kind is NoiseKind.DIAGONAL:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                g_graph = sde.diffusion(t, xg)
                if g_graph.requires_grad:
                    # Under the diagonal-noise assumption, Σ_i (σ_i v_i) ∂σ_i/∂x_k = σ_k v_k ∂_k σ_k.
                    (correction,) = torch.autograd.grad(
                        g_graph, xg, grad_outputs=g_graph.detach() * half_v, allow_unused=True
                    )
                else:
                    correction = None
            g = g_graph.detach()
            if correction is None:  # σ does not depend on x (e.g. torch.ones_like(x)): ∂σ = 0
                correction = torch.zeros_like(x)
        else:
            g = sde.diffusion(t, x)
            _, dg_g = torch.func.jvp(lambda y: sde.diffusion(t, y), (x,), (g,))
            correction = dg_g * half_v
        return x + drift * h + g * dW + correction
