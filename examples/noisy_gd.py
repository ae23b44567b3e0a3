"""Add your own algorithm's SME and verify its weak order (the tutorial's example).

Noisy gradient descent x_{k+1} = x_k − η (∇f(x_k) + ξ_k) on f(x) = ½ xᵀAx, where each coordinate
of the noise is ±s_i(x) with s_i(x) = σ √(1 + x_i²) (a random sign, so E ξ = 0 and
Cov ξ = Σ(x) = diag(s(x)²)). Its SMEs (Li, Tai & E 2017, 2019) are

    order 1:  dX = −A X dt + √η diag(s(X)) dW,
    order 2:  dX = −∇(f + (η/4)‖∇f‖²)(X) dt + √η diag(s(X)) dW,   ∇(‖∇f‖²/4) = A²X/2.

The random signs are drawn apart from the state (``draw``) and the step's mean and covariance are
known exactly, so the plug-in gets the small-noise control variates of ``smetool.verify``.

    python examples/noisy_gd.py [--fast]
"""

import argparse
import math

import torch

import smetool
from smetool.bibliography import LI_TAI_E_2019


class NoisyGD(smetool.SeparableNoise, smetool.Algorithm):
    """Noisy gradient descent on a quadratic, paired with its SMEs of orders 1 and 2.

    References
    ----------
    Q. Li, C. Tai, W. E, "Stochastic modified equations and dynamics of stochastic gradient
    algorithms I: mathematical foundations", JMLR 20 (2019).
    """

    name = "noisy-gd"
    references = (LI_TAI_E_2019,)
    sme_orders = (1, 2)

    def __init__(self, A, x0, sigma):
        self.A, self.x0, self.sigma = A, x0, sigma

    def noise_scale(self, x):  # s(x), (P, D)
        return self.sigma * torch.sqrt(1.0 + x * x)

    def initial_state(self, n_paths, *, dtype=None, device=None):
        return self.x0.to(dtype=dtype, device=device).expand(n_paths, -1).clone()

    # The control-variate contract: randomness drawn apart from the state, the step applied to
    # it, and the step's exact mean and covariance. `step` follows from `draw` and `step_with`.
    def draw(self, n_paths, lr, generator, *, dtype, device):
        signs = torch.randint(0, 2, (n_paths, self.x0.numel()), generator=generator, device=device)
        return (2 * signs - 1).to(dtype)

    def step_with(self, x, lr, signs):
        return x - lr * (x @ self.A.to(x) + self.noise_scale(x) * signs)

    def mean_step(self, x, lr):
        return x - lr * (x @ self.A.to(x))

    def step_covariance(self, x, lr):
        return torch.diag_embed(lr**2 * self.noise_scale(x) ** 2)

    def sme(self, lr, order=1):
        A = self.A
        if order == 1:
            def drift(t, x):
                return -(x @ A.to(x))
        else:
            def drift(t, x):
                return -(x @ A.to(x)) - (lr / 2) * (x @ (A @ A).to(x))
        return smetool.FunctionSDE(drift, lambda t, x: math.sqrt(lr) * self.noise_scale(x),
                                   noise_kind="diagonal")

    def test_functions(self):
        return {
            "f": lambda x: 0.5 * ((x @ self.A.to(x)) * x).sum(dim=1),
            "|x|^2": lambda x: (x * x).sum(dim=1),
            "x[0]": lambda x: x[:, 0],
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few paths (for the test suite)")
    args = parser.parse_args(argv)
    A = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    algorithm = NoisyGD(A, torch.tensor([1.0, -1.0], dtype=torch.float64), sigma=0.5)
    lrs = [0.1, 0.05, 0.025, 0.0125]
    for order, n_paths in ((1, 2_000), (2, 20_000)):
        result = smetool.verify(algorithm, lrs, n_paths // 10 if args.fast else n_paths,
                                horizon=1.0, order=order, steps_per_lr=4, seed=0, progress=False)
        print(result.table(), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
