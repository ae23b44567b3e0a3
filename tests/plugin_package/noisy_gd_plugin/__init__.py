"""Noisy gradient descent on ½‖x‖²: a plug-in written outside smetool, with its own option.

``x ← x − lr (x + σ ξ)``, ``ξ ~ N(0, I)``; its order-1 SME is the Ornstein–Uhlenbeck process
``dX = −X dt + √lr σ dW``.
"""

from __future__ import annotations

import math

import torch

from smetool import Algorithm, FunctionSDE, NoiseKind, Option, PluginSpec, Reference

DOE_2026 = Reference.of("doe2026noisy", "article", title="Noisy gradient descent as a test plug-in",
                        author="Doe, Jane", journal="Journal of Tests", year="2026")


class NoisyGD(Algorithm):
    """Gradient descent on ½‖x‖² with additive Gaussian gradient noise of scale ``sigma``.

    References
    ----------
    J. Doe, "Noisy gradient descent as a test plug-in", Journal of Tests (2026).
    """

    name = "noisy-gd"
    references = (DOE_2026,)

    def __init__(self, sigma: float, dtype: torch.dtype, device):
        self.sigma, self.dtype, self.device = float(sigma), dtype, device

    def initial_state(self, n_paths, *, dtype=None, device=None):
        return torch.full((n_paths, 2), 2.0, dtype=dtype or self.dtype, device=device or self.device)

    def step(self, x, lr, generator):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x - lr * (x + self.sigma * noise)

    def sme(self, lr, order=1):
        scale = math.sqrt(lr) * self.sigma
        return FunctionSDE(lambda t, x: -x, lambda t, x: torch.full_like(x, scale),
                           noise_kind=NoiseKind.DIAGONAL)

    def test_functions(self):
        return {"x0": lambda x: x[:, 0], "norm_sq": lambda x: (x * x).sum(dim=1)}


def _factory(*, dtype, device, sigma):
    return NoisyGD(sigma, dtype, device)


PLUGIN = PluginSpec(
    name="noisy-gd",
    factory=_factory,
    description="noisy GD on a quadratic (a third-party test plug-in)",
    orders=(1,),
    lrs=(0.2, 0.1, 0.05),
    horizon=1.0,
    n_paths=4_000,
    steps_per_lr=4,
    options=(Option("sigma", float, 0.5, "gradient-noise scale"),),
    algorithm=NoisyGD,
)
