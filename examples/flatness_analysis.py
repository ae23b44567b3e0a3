"""Flatness, the inverse variance-flatness relation and Hessian-noise alignment of dropout.

Trains dropout GD and plain GD on the embedded 1-D task from the same initialisations, then
measures at the end points: the Hessian trace (dropout finds flatter minima), the variance of the
dropout gradient noise against interval flatness along its principal directions (the noise is
small where the loss is flat), and the alignment alpha(H, Sigma) of the noise with the Hessian
against a random-eigenbasis baseline. `smetool analyze dropout` does all of this and more, with
verdicts, negative controls and figures; this script shows the building blocks.

    python examples/flatness_analysis.py [--fast]
"""

import argparse

import torch

from smetool.algorithms import DropoutAlgorithm, GradientDescent
from smetool.analysis import (
    alignment_with_baseline,
    hessian_spectrum,
    sample_covariance,
    train,
    update_samples,
    variance_flatness,
)
from smetool.models.dropout_problem import default_problem


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="short training (for the test suite)")
    args = parser.parse_args(argv)
    steps, seeds = (400, 2) if args.fast else (20_000, 4)
    # keep_prob is the probability of KEEPING a neuron: 0.9 is torch.nn.Dropout(0.1).
    problem, theta0 = default_problem(keep_prob=0.9)
    gen = torch.Generator().manual_seed(0)
    # The seeds share theta0 and differ in their dropout masks (GD is the same on every seed).
    inits = theta0.repeat(seeds, 1)
    # The problem is the landscape both algorithms train (its loss R_S, its exact Hessian).
    dropout = DropoutAlgorithm(problem, theta0)
    ends = {algo.name: train(algo, inits, lr=0.2, steps=steps, generator=gen).final
            for algo in (dropout, GradientDescent(problem, theta0))}

    for method, theta in ends.items():
        spectrum = hessian_spectrum(problem.hessian_matrix(theta), k=3)
        print(f"{method:>8}: training loss {problem.loss(theta).mean():.2e}, "
              f"Hessian trace {spectrum.trace.mean():.3f}, "
              f"top eigenvalue {spectrum.top_eigenvalues[:, 0].mean():.3f}")

    theta = ends["dropout"]
    H = problem.hessian_matrix(theta)
    # random gradient data: dropout gradients at the end points, (θ − step(θ))/lr
    noise = sample_covariance(update_samples(dropout, theta, 0.2, 500 if args.fast else 2000, gen))
    vf = variance_flatness(noise.covariance, theta, problem.loss, H, n_components=8)
    fit = vf.pooled_interval
    if fit is not None:
        print(f"noise variance ~ interval flatness^{fit.slope:+.2f} "
              f"(95% CI [{fit.ci_low:+.2f}, {fit.ci_high:+.2f}], {fit.n_points} directions): "
              "negative is the inverse variance-flatness relation")
    # The exact noise covariance of the dropout step at the end points:
    align = alignment_with_baseline(H, problem.noise_covariance(theta), gen, n_baseline=32)
    print(f"alignment alpha(H, Sigma) = {align.alpha.mean():.3f}, random-eigenbasis baseline "
          f"{align.baseline_mean.mean():.3f} +- {align.baseline_sd.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
