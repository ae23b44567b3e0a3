"""The SME of your own update rule, derived and verified (docs/tutorial-derive-sme.md).

Label-noise SGD on a small regression: one example per step, its label perturbed by ±σ,

    w_{k+1} = w_k − lr ∇_w ½ (f_w(u_i) − y_i − ξ)²,   f_w(u) = w_0 tanh(w_1 u),

so A(w, (i, ξ)) = −(f_w(u_i) − y_i − ξ) ∇_w f_w(u_i). smetool derives its SMEs (orders 1 and 2)
from A and the law of (i, ξ) — every example times both signs, enumerated exactly — and verifies
their weak orders against the update itself.

    python examples/derive_sme.py [--fast]
"""

import argparse

import torch

import smetool

U = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)
Y = torch.tanh(2.0 * U)
SIGMA = 0.5


def update(w, xi):
    """A(w, ξ): the increment per unit learning rate (not the new w)."""
    i, sign = xi
    u = U[i[:, 0]]
    t = torch.tanh(w[:, 1] * u)
    r = w[:, 0] * t - Y[i[:, 0]] - SIGMA * sign[:, 0]
    return -r.unsqueeze(1) * torch.stack([t, w[:, 0] * (1 - t * t) * u], dim=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few paths (for the test suite)")
    args = parser.parse_args(argv)
    noise = smetool.FiniteNoise.product(
        smetool.FiniteNoise.minibatches(8, 1),                                    # the example
        smetool.FiniteNoise(torch.tensor([[-1.0], [1.0]], dtype=torch.float64)))  # the label sign
    w0 = torch.tensor([0.2, 0.5], dtype=torch.float64)
    algo = smetool.DerivedAlgorithm(update, noise, w0, name="label-noise-sgd")

    sme = algo.exact_sme(lr=0.1, order=2)
    x = w0.unsqueeze(0)
    print("b0(w0)          =", sme.mean(x)[0].tolist())
    print("Sigma(w0)       =", sme.covariance(x)[0].tolist())
    print("(grad b0) b0    =", sme.correction(x)[0].tolist())
    print("order-2 drift   =", sme.drift(0.0, x)[0].tolist(), "\n")

    lrs = [0.2, 0.16, 0.1, 0.08]
    for order, n_paths in ((1, 1_000), (2, 4_000)):
        result = smetool.verify(algo, lrs, n_paths // 10 if args.fast else n_paths,
                                horizon=0.8, order=order, steps_per_lr=4, seed=0, progress=False,
                                hard_controls=not args.fast)
        print(result.table(), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
