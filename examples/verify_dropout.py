"""Verify the weak order of the dropout SME (Zhang, Li, Luo & Xu, ICLR 2024) from Python.

Runs discrete dropout GD and its order-1 SME on the verification problem for four learning rates,
prints the error table and the fitted orders, and saves the plot. The same as
`smetool verify dropout`.

    python examples/verify_dropout.py [--fast] [--plot errors.png]
"""

import argparse

import smetool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few paths (for the test suite)")
    parser.add_argument("--plot", default=None, help="save the log-log plot here")
    args = parser.parse_args(argv)
    # keep_prob is the probability of KEEPING a neuron: 0.9 is torch.nn.Dropout(0.1).
    algorithm = smetool.DropoutAlgorithm.verification_default(keep_prob=0.9)
    result = smetool.verify(
        algorithm, [0.04, 0.02, 0.01, 0.005], horizon=0.2,
        n_paths=500 if args.fast else 10_000, steps_per_lr=4, order=1, seed=0,
        progress=not args.fast,
    )
    print(result.table())
    if args.plot and result.fits:
        result.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
