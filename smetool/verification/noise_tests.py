"""Test functions chosen to see the noise: quadratic forms along the leading eigenvectors of Σ.

An order-2 check exists to test the noise covariance ``Σ`` of an SME, which enters the weak
error at ``O(lr)`` through ``E g(Θ_T) − g(θ̄_T) ≈ ½ tr(∇²g C_T)`` (``C_T`` the covariance the
noise accumulates about the noise-free path ``θ̄``). A test function whose Hessian weighs the
directions where ``Σ`` is large sees it most: ``g_v(θ) = (vᵀ(θ − θ*))²`` with ``v`` a leading
eigenvector of ``Σ(θ*)`` and ``θ*`` the noise-free path at the horizon. Its value is dominated by
the fluctuation along ``v``, so a relative error ``δ`` in ``Σ`` changes ``E g_v`` by about
``δ · E g_v``, while the quadratic control variate removes the leading part of its sampling
noise. :func:`smetool.verify` adds them to an order-2 check's default test functions and reports
the detection limit of each.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..algorithms.base import Algorithm, TestFunction
from ..integrate import solve
from ..perturbed import noise_covariance
from ..sde import NoiseFree, NoiseKind
from ..solvers import SmallNoiseHeun

__all__ = ["QuadraticAlong", "noise_test_functions", "NOISE_MODE_STEPS"]

NOISE_MODE_STEPS = 256
"""Steps of the noise-free flow that gives the centre ``θ*`` (any fixed point would do; the flow
at the horizon keeps the values small)."""


class QuadraticAlong:
    """``g(θ) = (vᵀ(θ − c))²``, row by row (picklable, so chunks can run on any executor).

    Parameters
    ----------
    center : Tensor, (D,)
    direction : Tensor, (D,)
    """

    def __init__(self, center: Tensor, direction: Tensor):
        self.center, self.direction = center, direction

    def __call__(self, x: Tensor) -> Tensor:
        proj = (x - self.center.to(x)) @ self.direction.to(x)
        return proj * proj

    def __repr__(self) -> str:
        return f"QuadraticAlong(D={self.center.numel()})"


def noise_test_functions(algorithm: Algorithm, lr: float, horizon: float, count: int
                         ) -> dict[str, TestFunction]:
    """``count`` quadratic forms along the leading eigenvectors of ``Σ`` at the noise-free path.

    ``θ*`` is the noise-free flow of the lowest-order SME's drift (the same for every learning
    rate) at the horizon, by the small-noise Heun scheme with :data:`NOISE_MODE_STEPS` steps in
    float64; ``Σ(θ*)`` is read off the SME at ``lr`` (its eigenvectors do not depend on ``lr``).
    Named ``"noise_mode_1"``, … in decreasing eigenvalue.

    Returns
    -------
    dict of str to QuadraticAlong
        Empty for SAMPLED noise (``Σ`` is only known through draws) or ``count = 0``.
    """
    sme = algorithm.sme(lr, min(algorithm.sme_orders))
    if count <= 0 or sme.noise_kind is NoiseKind.SAMPLED:
        return {}
    x0 = algorithm.initial_state(1, dtype=torch.float64, device="cpu")
    flow = solve(NoiseFree(sme), x0, (0.0, horizon), dt=horizon / NOISE_MODE_STEPS,
                 method=SmallNoiseHeun(), generator=0)
    center = flow.xs[-1, 0]
    cov = noise_covariance(sme, horizon, center.unsqueeze(0))[0]
    cov = 0.5 * (cov + cov.T)
    evals, evecs = torch.linalg.eigh(cov)
    out: dict[str, TestFunction] = {}
    for i in range(min(count, center.numel())):
        if not evals[-1 - i] > 0:
            break
        out[f"noise_mode_{i + 1}"] = QuadraticAlong(center, evecs[:, -1 - i].clone())
    return out
