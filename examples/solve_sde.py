"""Solve an SDE on many paths and compare with its closed-form moments.

Geometric Brownian motion dX = μX dt + σX dW has E X_T = x0 e^{μT} and
E X_T² = x0² e^{(2μ+σ²)T}. Euler–Maruyama (weak order 1) and Platen's scheme (weak order 2) are
run on the same number of paths; the table shows each error with its standard error.

    python examples/solve_sde.py [--fast]
"""

import argparse
import math

import torch

import smetool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="few paths (for the test suite)")
    args = parser.parse_args(argv)
    mu, sigma, x0, T = 0.5, 0.4, 1.0, 1.0
    paths = 20_000 if args.fast else 400_000
    gbm = smetool.FunctionSDE(lambda t, x: mu * x, lambda t, x: sigma * x, noise_kind="diagonal")
    exact = {"E X": x0 * math.exp(mu * T), "E X^2": x0**2 * math.exp((2 * mu + sigma**2) * T)}
    print(f"{'method':>8} {'dt':>7} {'moment':>6} {'error':>10} {'std err':>9}")
    for method in (smetool.EulerMaruyama(), smetool.PlatenWeak2()):
        for dt in (0.25, 0.125):
            sol = smetool.solve(gbm, torch.full((paths, 1), x0, dtype=torch.float64), (0.0, T),
                                dt=dt, method=method, generator=0)
            for name, values in (("E X", sol.final[:, 0]), ("E X^2", sol.final[:, 0] ** 2)):
                err = float(values.mean()) - exact[name]
                se = float(values.std()) / math.sqrt(paths)
                print(f"{method.name:>8} {dt:>7g} {name:>6} {err:>+10.2e} {se:>9.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
