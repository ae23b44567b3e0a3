"""Add your own algorithm's SME and verify its weak order (the tutorial's example).

Noisy gradient descent x_{k+1} = x_k − η (∇f(x_k) + ξ_k) on f(x) = ½ xᵀAx, where each coordinate
of the noise is ±s_i(x) with s_i(x) = σ √(1 + x_i²) (a random sign, so E ξ = 0 and
Cov ξ = diag(s(x)²)). Its order-1 SME (Li, Tai & E 2019) is

    dX = −A X dt + √η diag(s(X)) dW.

    python examples/noisy_gd.py [--fast]
"""

import argparse
import math

import torch

import smetool


class NoisyGD(smetool.Algorithm):
    """Noisy gradient descent on a quadratic, paired with its order-1 SME."""

    name = "noisy_gd"
    reference = "Li, Tai & E (2019), JMLR 20"
    sme_orders = (1,)

    def __init__(self, A, x0, sigma):
        self.A, self.x0, self.sigma = A, x0, sigma

    def noise_scale(self, x):  # s(x), (P, D)
        return self.sigma * torch.sqrt(1.0 + x * x)

    def initial_state(self, n_paths, *, dtype=None, device=None):
        return self.x0.to(dtype=dtype, device=device).expand(n_paths, -1).clone()

    def step(self, x, lr, generator):
        signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1
        return x - lr * (x @ self.A + self.noise_scale(x) * signs.to(x.dtype))

    def sme(self, lr, order=1):
        return smetool.FunctionSDE(
            lambda t, x: -(x @ self.A),
            lambda t, x: math.sqrt(lr) * self.noise_scale(x),
            noise_kind="diagonal",
        )

    def test_functions(self):
        return {
            "f": lambda x: 0.5 * ((x @ self.A) * x).sum(dim=1),
            "|x|^2": lambda x: (x * x).sum(dim=1),
            "x[0]": lambda x: x[:, 0],
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few paths (for the test suite)")
    args = parser.parse_args(argv)
    A = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    algorithm = NoisyGD(A, torch.tensor([1.0, -1.0], dtype=torch.float64), sigma=0.5)
    result = smetool.verify(
        algorithm, [0.1, 0.05, 0.025, 0.0125], horizon=1.0,
        n_paths=2_000 if args.fast else 50_000, steps_per_lr=4, seed=0, progress=not args.fast,
    )
    print(result.table())
    if not args.fast:  # with 50,000 paths every error is resolved: check the claimed order
        for name, fit in result.fits.items():
            print(f"{name}: weak order {fit.slope:.2f}, CI contains 1: {fit.contains(1.0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
