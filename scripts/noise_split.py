"""How dropout-sgd's noise splits into dropout, mini-batch and interaction parts (measured).

    python scripts/noise_split.py            # prints the tables of docs/tutorial-derive-sme.md

For the ``dropout-sgd`` plug-in's task the covariance ``Σ`` of one step's increment is split
exactly, over every mask × mini-batch (:func:`smetool.covariance_split`), into the dropout main
effect (the covariance of ``E[A | mask]``: full-batch dropout noise), the mini-batch main effect
(the covariance of ``E[A | batch]``: SGD noise on the expected dropout loss ``L_S``) and their
interaction (the rest; the three are uncorrelated). Reported at the states of the noise-free
path ``θ̄_{k+1} = θ̄_k + lr b₀(θ̄_k)`` at ``lr = 0.1`` over the plug-in's horizon ``T = 0.8``, for
the batch sizes 1, 4 (the default) and 8.
"""

from __future__ import annotations

import torch

from smetool.algorithms.derived_two_layer import dropout_sgd_problem

LR, HORIZON = 0.1, 0.8


def main() -> int:
    print("| B | t | tr Σ | dropout | mini-batch | interaction | ‖·‖_F dropout / mini-batch / "
          "interaction |")
    print("|---|---|---|---|---|---|---|")
    for batch in (1, 4, 8):
        algo = dropout_sgd_problem(batch_size=batch)
        x = algo.x0.unsqueeze(0)
        steps = round(HORIZON / LR)
        for k in range(steps + 1):
            if k % 4 == 0:
                s = algo.noise_split(x).summary()
                print(f"| {batch} | {k * LR:.1f} | {s['total']['trace']:.4f} | "
                      f"{100 * s['first']['share']:.1f} % | {100 * s['second']['share']:.1f} % | "
                      f"{100 * s['interaction']['share']:.1f} % | "
                      f"{s['first']['frobenius']:.4f} / {s['second']['frobenius']:.4f} / "
                      f"{s['interaction']['frobenius']:.4f} |")
            with torch.no_grad():
                x = algo.mean_step(x, LR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
