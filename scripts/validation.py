"""Generate the validation page: every solver's and plug-in's measured order, the exact references,
and the benchmark ratios, each with the command that produced it and the machine it ran on.

    python scripts/validation.py                 # full run (about 20 min on 2 CPU cores)
    python scripts/validation.py --fast --out D  # a smoke run in seconds; its numbers prove nothing
    python scripts/validation.py --render-only   # re-render docs/validation.md (and its figures)

The run writes ``validation.json`` (everything measured, with the settings), ``validation.md``
(rendered from the JSON alone, so the page holds no typed number) and the convergence figures
``figures/validation/*.png`` (``scripts/validation_figures.py``, also from the JSON alone) into
``--out`` (default ``docs/``). Every check has one of three verdicts — **pass**, **fail** or
**inconclusive** — computed here from the numbers on the page, and the summary line counts each:

* exact references (no randomness): pass when the last local slope
  ``log(e_i/e_{i+1}) / log(h_i/h_{i+1})`` is within 0.05 of the theoretical order, else fail;
* Monte-Carlo orders (solvers, the problem library, plug-ins): the series test
  (:func:`smetool.judge_series`) — the errors are fitted as ``c_{p−s} h^{p−s} + c_p h^p + …``
  (``s = 1`` for weak errors, ``½`` for strong ones) by weighted least squares with an allowance
  for the truncated terms; **fail** when the lower term ``c_{p−s}`` is demanded (beyond
  ``z_{1−α/2}`` of its standard error, ``α = 0.01`` per check), **pass** when it is not and
  ``c_p`` is resolved, **inconclusive** otherwise (with the reason). The log–log slope and its
  interval are shown as a picture, not as the judge;
* plug-ins: ``smetool verify`` at the plug-in's defaults (seed 0), whose verdict is the same
  series test per test function at the Bonferroni level ``0.01 / K``, plus every negative
  control — declared by the plug-in, or built from the run's detection limits — failed. The
  page shows per test function the fitted coefficients with their standard errors, the
  detection limits for the noise covariance and the drift correction, the variance reduction of
  the control variates, and, where a closed form exists, every error's distance from the exact
  one in standard errors.

No seed was chosen because it passed; every run uses the seeds written below.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXACT_TOLERANCE = 0.05
MC_MIN_SNR = 5.0
MC_CONFIDENCE = 0.99
MC_ALPHA = 0.01
DERIVED = ("dropout-sgd", "dropconnect", "gaussian-dropout")
"""Plug-ins whose SMEs come from :func:`smetool.derive_sme` (or its theorem in closed form)."""


# ------------------------------------------------------------------------------------ machine
def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(device: str) -> dict:
    import torch

    import smetool

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "smetool": smetool.__version__,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ------------------------------------------------------------------------- exact references
def _local_slopes(steps, errors) -> list[float]:
    return [math.log(abs(errors[i] / errors[i + 1])) / math.log(steps[i] / steps[i + 1])
            for i in range(len(steps) - 1)]


def _exact_case(name, what, reference, theory, steps, errors, step_name="h") -> dict:
    slopes = _local_slopes(steps, errors)
    return {"name": name, "what": what, "reference": reference, "theory": theory,
            "step_name": step_name, "steps": list(steps), "errors": list(errors),
            "local_slopes": slopes,
            "verdict": "pass" if abs(slopes[-1] - theory) <= EXACT_TOLERANCE else "fail"}


def exact_section(fast: bool) -> dict:
    import numpy as np

    from smetool import HeavyBallSGD, SGDLeastSquares
    from smetool.algorithms.sam import DEFAULT_X0, USAM, default_problem
    from smetool.exact import (
        LinearDropoutMoments,
        ScaleInvariantNorms,
        SVAGMoments,
        gbm_em_moments,
        gbm_moment,
        gbm_platen_moments,
        ou_em_moments,
        ou_moments,
    )

    levels = range(3, 7) if fast else range(3, 11)
    hs = [2.0**-k for k in levels]
    cases = []
    for solver, mu, sigma, moments, p in (("Euler–Maruyama", 1.0, 0.5, gbm_em_moments, 1),
                                          ("Platen weak order 2", 1.5, 0.2, gbm_platen_moments, 2)):
        for k, g in ((0, "E X_1"), (1, "E X_1²")):
            truth = gbm_moment(mu, sigma, 1.0, 1.0, k + 1)
            errs = [moments(mu, sigma, 1.0, h, round(1 / h))[k] - truth for h in hs]
            cases.append(_exact_case(
                f"{solver}, GBM", f"{g}, μ = {mu:g}, σ = {sigma:g}, X_0 = 1, T = 1",
                "exact discrete moments vs Kloeden & Platen (4.4.6)", p, hs, errs))
    A, B, x0 = np.array([[1.0, 0.5], [0.0, 2.0]]), np.array([[0.5, 0.0], [0.3, 0.4]]), [1.0, -1.0]
    exact = ou_moments(A, B, x0, 1.0)
    for label, pick in (("E X_1[0]", lambda m: m.mean[0]), ("Var X_1[0]", lambda m: m.cov[0, 0])):
        errs = [pick(ou_em_moments(A, B, x0, h, round(1 / h))) - pick(exact) for h in hs]
        cases.append(_exact_case("Euler–Maruyama, 2-d OU", f"{label}, T = 1",
                                 "exact discrete moments vs Van Loan covariance", 1, hs, errs))

    lrs = [2.0**-k for k in (range(3, 7) if fast else range(3, 12))]

    def sme_cases(label, model, z0, orders, reference):
        err = model.weak_errors(z0, lrs, 1.0, orders=orders)
        for order in orders:
            for name in err.names:
                cases.append(_exact_case(f"{label} SME order {order}", f"E {name}, T = 1",
                                         reference, order, lrs, err.series(name, order).tolist(),
                                         step_name="lr"))

    sgd = SGDLeastSquares.default()
    sme_cases("SGD (least squares, n = 6, B = 1)", sgd.exact_moments(),
              sgd.initial_state(1)[0].numpy(), (1, 2), "exact moment recursion vs moment ODE")
    X = np.array([[1.0, 0.5, 0.2], [0.3, -1.0, 0.4], [-0.6, 0.2, 1.0], [0.9, 0.8, -0.5]])
    y = np.array([1.0, -0.5, 0.7, 0.2])
    sme_cases("Dropout (linear model, p = 0.8)", LinearDropoutMoments(X, y, keep_prob=0.8),
              np.array([1.0, -1.0, 0.5]), (1, 2), "exact moment recursion (mask enumeration) vs ODE")
    hb = HeavyBallSGD.default()
    sme_cases("Heavy-ball SGD", hb.exact_moments(), hb.initial_state(1)[0].numpy(), (1,),
              "exact moment recursion vs moment ODE")
    usam = USAM(default_problem(0.5), DEFAULT_X0, rho=0.5)
    sme_cases("USAM (3-d quadratic, ρ = σ = 0.5)", usam.exact_moments(),
              usam.x0.numpy(), (1,), "exact moment recursion vs moment ODE")
    # SGD with weight decay, pure noise of constant norm: the discrete norm is deterministic and
    # the SME's ‖W_t‖⁴ closed-form; the direction's first-order terms cancel (docs/numerics.md).
    norms = ScaleInvariantNorms(1.0, 0.5, 0.5, 3, 0.5).weak_errors(lrs, 1.0)
    for key, what, theory in (("norm_sq", "‖w‖², T = 1", 1), ("cos_sq", "E (e·ŵ)², T = 1", 2)):
        cases.append(_exact_case(
            "SGD + weight decay, scale-invariant, pure noise (λ = σ = 0.5, d = 3)", what,
            "exact norm recursion vs the SME's closed-form ‖W_t‖⁴", theory, lrs,
            norms[key].tolist(), step_name="lr"))
    base_lr = 0.25
    taus = [base_lr / 2**k for k in (range(0, 4) if fast else range(0, 9))]
    svag_err = SVAGMoments(sgd.exact_moments(), base_lr).weak_errors(
        sgd.initial_state(1)[0].numpy(), taus, 1.0, orders=(1,))
    for name in svag_err.names:
        ls = [base_lr / t for t in taus]
        cases.append(_exact_case(
            "SVAG vs the SGD SME at η = 0.25", f"E {name}, T = 1, error in 1/l", "exact moments",
            1, [1 / v for v in ls], svag_err.series(name, 1).tolist(), step_name="1/l"))
    return {"title": "Exact references (no randomness)", "cases": cases,
            "command": "python scripts/validation.py --only exact"}


# ------------------------------------------------------------------ Monte-Carlo solver orders
# Each row of the solver section in one `smetool convergence` call (its own seeds, so the numbers
# agree within their standard errors, not digit for digit): tests/test_convergence_cli.py runs
# every one against the committed record.
CONVERGENCE_COMMANDS = {
    ("euler", "weak", "GBM μ = 1, σ = 0.5, g = x"):
        "gbm --set mu=1 --set sigma=0.5 --method euler --test x --dts 2^-3..2^-6 --paths 100000",
    ("milstein", "weak", "GBM μ = 1, σ = 0.5, g = x"):
        "gbm --set mu=1 --set sigma=0.5 --method milstein --test x --dts 2^-3..2^-6 "
        "--paths 100000",
    ("heun", "weak", "GBM μ = 1, σ = 0.5, g = x²"):
        "gbm --set mu=1 --set sigma=0.5 --method heun --test x^2 --dts 2^-3..2^-6 --paths 100000",
    ("platen", "weak", "GBM μ = 1.5, σ = 0.2, g = x"):
        "gbm --set mu=1.5 --set sigma=0.2 --method platen --test x --dts 2^-4..2^-7 --paths 50000",
    ("platen", "weak", "GBM μ = 1.5, σ = 0.2, g = x²"):
        "gbm --set mu=1.5 --set sigma=0.2 --method platen --test x^2 --dts 2^-4..2^-7 "
        "--paths 50000",
    ("euler", "weak", "2-d, non-commutative general noise, g = x_1²"):
        "noncommutative --method euler --test x1^2 --dts 2^-2..2^-5 --paths 50000",
    ("platen", "weak", "2-d, non-commutative general noise, g = x_1²"):
        "noncommutative --method platen --test x1^2 --dts 2^-1..2^-4 --paths 50000",
    **{(name, "strong", "GBM μ = 0.5, σ = 1, E|Y_T − X_T|"):
       f"gbm --set mu=0.5 --set sigma=1 --method {name} --kind strong --dts 2^-4..2^-8 "
       "--paths 20000" for name in ("euler", "milstein", "heun")},
}


def convergence_command(solver: str, kind: str, problem: str) -> str | None:
    """The `smetool convergence` call that reproduces a row of the solver section."""
    args = CONVERGENCE_COMMANDS.get((solver, kind, problem))
    return None if args is None else "smetool convergence " + args


def solver_section(fast: bool, device: str) -> dict:
    import torch

    from smetool import EulerMaruyama, Milstein, PlatenWeak2, SmallNoiseHeun, solve
    from smetool.brownian import GaussianIncrements
    from smetool.exact import gbm_sde, noncommutative_problem

    class RecordW(GaussianIncrements):
        """Gaussian increments that also sum ``W_T`` per path: the exact solution from the same
        Brownian path is a control variate with known mean."""

        total = None

        def sample(self, t0, t1, shape, generator, dtype, device):
            dW = super().sample(t0, t1, shape, generator, dtype, device)
            self.total = dW.clone() if self.total is None else self.total + dW
            return dW

    scale = 20 if fast else 1
    f64 = torch.float64
    nc = noncommutative_problem()
    mu1, s1, s2 = -273 / 512, 1 / 4, 1 / 16

    def gbm(mu, sigma, power):
        def run(solver, h, P, seed):
            inc = RecordW()
            y = solve(gbm_sde(mu, sigma), torch.ones(P, 1, dtype=f64, device=device), (0.0, 1.0),
                      dt=h, method=solver, increments=inc, generator=seed).final[:, 0]
            X = torch.exp((mu - sigma**2 / 2) + sigma * inc.total[:, 0])
            return y**power - X**power
        return run

    def noncommutative(solver, h, P, seed):
        inc = RecordW()
        y = solve(nc.sde, nc.initial_state(P, device=device), (0.0, 1.0), dt=h, method=solver,
                  increments=inc, generator=seed).final
        W = inc.total
        X1 = torch.exp((mu1 - s1**2 / 2 - s2**2 / 2) + s1 * W[:, 0] + s2 * W[:, 1])
        return nc.test_function(y) - X1**2

    # (solver, problem label, runner, levels, paths): the problems and step ranges of
    # tests/test_solvers_convergence.py, inside the asymptotic range there, at 5x the paths.
    specs = [
        (EulerMaruyama(), "GBM μ = 1, σ = 0.5, g = x", gbm(1.0, 0.5, 1), range(3, 7), 100_000),
        (Milstein(), "GBM μ = 1, σ = 0.5, g = x", gbm(1.0, 0.5, 1), range(3, 7), 100_000),
        # Heun's drift makes E Y_n = (1 + μh + μ²h²/2)^n, second order in the mean of a linear
        # SDE; its first-order error shows in g = x², with a constant ∝ σ² (small noise).
        (SmallNoiseHeun(), "GBM μ = 1, σ = 0.5, g = x²", gbm(1.0, 0.5, 2), range(3, 7), 100_000),
        (PlatenWeak2(), "GBM μ = 1.5, σ = 0.2, g = x", gbm(1.5, 0.2, 1), range(4, 8), 50_000),
        (PlatenWeak2(), "GBM μ = 1.5, σ = 0.2, g = x²", gbm(1.5, 0.2, 2), range(4, 8), 50_000),
        (EulerMaruyama(), "2-d, non-commutative general noise, g = x_1²", noncommutative,
         range(2, 6), 50_000),
        (PlatenWeak2(), "2-d, non-commutative general noise, g = x_1²", noncommutative,
         range(1, 5), 50_000),
    ]
    cases = []
    for j, (solver, label, run, levels, paths) in enumerate(specs):
        P = max(1000, paths // scale)
        hs, errs, ses = [], [], []
        start = time.perf_counter()
        for i, level in enumerate(levels):
            d = run(solver, 2.0**-level, P, 1000 * (j + 1) + i)
            hs.append(2.0**-level)
            errs.append(float(d.mean()))
            ses.append(float(d.std()) / math.sqrt(P))
        cases.append(_mc_case(solver.name, "weak", label, solver.weak_order, P, hs, errs, ses,
                              start))
    strong = strong_cases(fast, device)
    return {"title": "Solvers: Monte-Carlo weak and strong orders", "cases": cases + strong,
            "command": "python scripts/validation.py --only solvers",
            "confidence": MC_CONFIDENCE, "min_snr": MC_MIN_SNR}


def _mc_case(solver: str, kind: str, problem: str, theory: float, paths: int, hs: list,
             errs: list, ses: list, start: float) -> dict:
    """One Monte-Carlo order with its verdict (:func:`mc_verdict`)."""
    min_snr = min(abs(e) / s for e, s in zip(errs, ses))
    case = {"solver": solver, "problem": problem, "theory": theory, "kind": kind,
            "paths": paths, "steps": hs, "errors": errs, "stderrs": ses, "min_snr": min_snr}
    fit, verdict = mc_verdict(hs, errs, ses, theory, kind)
    case.update(slope=None if fit is None else fit.slope,
                ci=None if fit is None else list(fit.ci),
                ratios=[] if fit is None else list(fit.ratios),
                series=series_record(verdict), verdict=verdict.verdict.value,
                reasons=list(verdict.reasons))
    case["seconds"] = time.perf_counter() - start
    case["convergence"] = convergence_command(solver, kind, problem)
    return case


def series_record(verdict) -> dict:
    """What the page shows of a series verdict: the model's terms, the lower and the leading
    coefficient with their standard errors (truncation allowance included)."""
    return {"terms": verdict.terms, "lower": verdict.lower, "lower_stderr": verdict.lower_stderr,
            "leading": verdict.leading, "leading_stderr": verdict.leading_stderr,
            "lower_power": verdict.order - verdict.spacing, "order": verdict.order}


def mc_verdict(steps, errors, stderrs, theory, kind):
    """``(slope fit or None, SeriesVerdict)`` of Monte-Carlo errors: the series test of
    :func:`smetool.judge_series` at level :data:`MC_ALPHA` (powers spaced by 1 for weak errors, ½
    for strong ones), and the log–log slope of :func:`smetool.fit_order` as a picture. The test
    suite recomputes it from the record."""
    from smetool import fit_order, judge_series

    verdict = judge_series(steps, errors, stderrs, theory, alpha=MC_ALPHA,
                           spacing=0.5 if kind == "strong" else 1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unresolved points and sign changes: a picture only
            fit = fit_order(steps, errors, stderrs, min_snr=MC_MIN_SNR, confidence=MC_CONFIDENCE)
    except ValueError:  # fewer than two resolved errors: no slope at all
        fit = None
    return fit, verdict


def strong_cases(fast: bool, device: str) -> list[dict]:
    """Strong orders on GBM (μ = 0.5, σ = 1, T = 1, h = 2^-4 … 2^-8): ``E|Y_T − X_T|`` with one
    torchsde ``BrownianInterval`` per run queried on every grid, so every step size integrates the
    same Brownian paths and ``X_T`` is exact on them. The levels share paths, so their errors are
    correlated; the lack-of-fit inflation of the interval absorbs that (tests/
    test_solvers_convergence.py uses the same problem and range)."""
    import torch
    import torchsde

    from smetool import EulerMaruyama, Milstein, SmallNoiseHeun, solve
    from smetool.exact import gbm_sde

    mu, sigma, P = 0.5, 1.0, 1000 if fast else 20_000
    cases = []
    for j, solver in enumerate((EulerMaruyama(), Milstein(), SmallNoiseHeun())):
        start = time.perf_counter()
        bm = torchsde.BrownianInterval(0.0, 1.0, size=(P, 1), dtype=torch.float64, device=device,
                                       entropy=3000 + j)
        X = torch.exp((mu - sigma**2 / 2) + sigma * bm(0.0, 1.0)[:, 0])
        hs, errs, ses = [], [], []
        for level in range(4, 9):
            h = 2.0**-level
            y = solve(gbm_sde(mu, sigma), torch.ones(P, 1, dtype=torch.float64, device=device),
                      (0.0, 1.0), dt=h, method=solver, increments=bm).final[:, 0]
            d = (y - X).abs()
            hs.append(h)
            errs.append(float(d.mean()))
            ses.append(float(d.std()) / math.sqrt(P))
        problem = f"GBM μ = {mu:g}, σ = {sigma:g}, E|Y_T − X_T|"
        cases.append(_mc_case(solver.name, "strong", problem, solver.strong_order, P, hs, errs,
                              ses, start))
    return cases


# ----------------------------------------------------------------------- problem library
def problem_library_section(fast: bool, device: str) -> dict:
    """Orders of every solver on :mod:`smetool.exact.sde_problems`: SciML's SDEProblemLibrary
    ports and time-dependent, non-symmetric problems.

    * Exact weak errors (no randomness): on the affine (additive) problems one step is
      ``Y ↦ F Y + c + G ΔW`` — read off the solver's step by probing it with unit states and
      increments — so mean and covariance follow exactly; on the linear problems ``E G`` and
      ``E G⊗G`` are sums over every three-point increment (Gaussian moments to the degree used).
      Verdict: the last local slope within ``EXACT_TOLERANCE`` of the declared order.
    * Monte-Carlo weak orders of Platen's and Heun's schemes on time-dependent additive noise
      (the control variate is the exact solution on the same path) and strong orders on the
      SciML problems (one Brownian path per sample shared by every step). Verdict: the series
      test (:func:`mc_verdict`); the strong errors of one row share their Brownian paths, so
      their series test's level is approximate.
    """
    import numpy as np
    import torch

    from smetool import EulerMaruyama, Milstein, PlatenWeak2, SmallNoiseHeun, solve
    from smetool.brownian import GaussianIncrements, Increments
    from smetool.exact import (
        additive_problem,
        rotation_problem,
        sciml_additive,
        sciml_additive_system,
        sciml_cubic,
        sciml_linear,
        sciml_linear_2d,
        sciml_wave,
        time_dependent_gbm,
    )

    f64 = torch.float64
    solvers = [EulerMaruyama(), Milstein(), PlatenWeak2(), SmallNoiseHeun()]
    cases = []

    def affine_moments(solver, problem, h, n):
        D, M = problem.dim, problem.noise_dim
        X = torch.cat([torch.zeros(1, D, dtype=f64), torch.eye(D, dtype=f64),
                       torch.zeros(M, D, dtype=f64)]).to(device)
        Z = torch.cat([torch.zeros(1 + D, M, dtype=f64), torch.eye(M, dtype=f64)]).to(device)
        m, C = np.array(problem.x0), np.zeros((D, D))
        for k in range(n):
            out = solver.step(problem.sde, k * h, X, h, Z, None).cpu().numpy()
            F, G = (out[1:D + 1] - out[0]).T, (out[D + 1:] - out[0]).T
            m, C = F @ m + out[0], F @ C @ F.T + h * G @ G.T
        return m, C

    def linear_moments(solver, problem, h, n):
        # No two-point Lévy variables enter: the problems here have diagonal or scalar noise.
        D, M = problem.dim, problem.noise_dim
        vals = torch.tensor([-math.sqrt(3 * h), 0.0, math.sqrt(3 * h)], dtype=f64)
        probs = torch.tensor([1 / 6, 2 / 3, 1 / 6], dtype=f64)
        idx = torch.cartesian_prod(*[torch.arange(3)] * M).reshape(-1, M)
        dW, w = vals[idx], probs[idx].prod(1)
        K = w.numel()
        basis = torch.eye(D, dtype=f64).repeat_interleave(K, 0).to(device)
        m1, m2 = np.array(problem.x0), np.outer(problem.x0, problem.x0).reshape(-1)
        for k in range(n):
            out = solver.step(problem.sde, k * h, basis, h, dW.repeat(D, 1).to(device), None)
            G = out.cpu().reshape(D, K, D).permute(1, 2, 0)
            m1 = (w[:, None, None] * G).sum(0).numpy() @ m1
            kron = torch.einsum("pij,pkl->pikjl", G, G).reshape(K, D * D, D * D)
            m2 = (w[:, None, None] * kron).sum(0).numpy() @ m2
        return m1, m2.reshape(D, D) - np.outer(m1, m1)

    def exact_row(solver, problem, what, moments, pick, exact, levels):
        hs = [2.0**-k for k in levels]
        errs = [pick(*moments(solver, problem, h, round(1 / h))) - exact for h in hs]
        case = _exact_case(f"{solver.name}, {problem.name}", what,
                           "exact scheme moments vs the closed form (" + problem.source + ")",
                           solver.weak_order_for(problem.noise_kind), hs, errs)
        case.update(type="exact", solver=solver.name, problem=problem.name)
        cases.append(case)

    def gaussian_refs(problem):
        D = problem.dim
        m = np.array([problem.observable(f"x{i + 1}").expectation(1.0) for i in range(D)])
        v = np.array([problem.observable(f"x{i + 1}^2").expectation(1.0) for i in range(D)])
        return m, v - m * m

    affine_levels = range(3, 6) if fast else range(3, 10)
    linear_levels = range(4, 6) if fast else range(4, 10)
    issue_repro = additive_problem(B=[[0.05]], beta=[0.5], x0=[1.0])
    for problem in (sciml_additive(), sciml_additive_system(), issue_repro, additive_problem()):
        m, v = gaussian_refs(problem)
        last = problem.dim - 1 if problem.name == "sciml_additive_system" else 0
        for solver in solvers:
            exact_row(solver, problem, "E X_1, T = 1", affine_moments,
                      lambda mm, C: mm[0], m[0], affine_levels)
            exact_row(solver, problem, f"Var X_1[{last}], T = 1", affine_moments,
                      lambda mm, C, i=last: C[i, i], v[last], affine_levels)
    for problem in (sciml_linear(), time_dependent_gbm(), rotation_problem()):
        mean = problem.observables[0].expectation(1.0)
        second = problem.observable("x^2" if problem.dim == 1 else "x1^2").expectation(1.0)
        for solver in solvers:
            # Heun's trapezoidal drift makes the mean of a linear SDE second order; its declared
            # first order shows in the second moment.
            if solver.name != "heun":
                exact_row(solver, problem, "E X_1, T = 1", linear_moments,
                          lambda m1, C: m1[0], mean, linear_levels)
            exact_row(solver, problem, "E X_1², T = 1", linear_moments,
                      lambda m1, C: C[0, 0] + m1[0] ** 2, second, linear_levels)

    class RecordW(GaussianIncrements):
        total = None

        def sample(self, t0, t1, shape, generator, dtype, device):
            dW = super().sample(t0, t1, shape, generator, dtype, device)
            self.total = dW.clone() if self.total is None else self.total + dW
            return dW

    class Table(Increments):
        name, gaussian, matched_moments = "table", True, 10**9

        def __init__(self, table, h):
            self.table, self.h = table, h

        def sample(self, t0, t1, shape, generator, dtype, device):
            return self.table[round(t0 / self.h)]

    def mc_row(solver, problem, kind, label, theory, hs, errs, ses, P, start):
        case = _mc_case(solver.name, kind, f"{problem.name}: {label}", theory, P, hs, errs, ses,
                        start)
        case.update(type="mc", source=problem.source)
        cases.append(case)

    weak_paths = 2000 if fast else 20_000
    weak_levels = range(2, 5) if fast else range(2, 6)
    for j, problem in enumerate((issue_repro, additive_problem())):
        g = problem.observable("x1^2").g
        for solver in (PlatenWeak2(), SmallNoiseHeun(), EulerMaruyama()):
            start, hs, errs, ses = time.perf_counter(), [], [], []
            for i, level in enumerate(weak_levels):
                inc, h = RecordW(), 2.0**-level
                y = solve(problem.sde, problem.initial_state(weak_paths, device=device),
                          (0.0, 1.0), dt=h, method=solver, increments=inc,
                          generator=4000 + 100 * j + i).final
                d = g(y) - g(problem.solution(1.0, inc.total))
                hs.append(h)
                errs.append(float(d.mean()))
                ses.append(float(d.std()) / math.sqrt(weak_paths))
            theory = solver.weak_order_for(problem.noise_kind)
            mc_row(solver, problem, "weak", "E X_1², exact solution on the same path as control "
                   "variate", theory, hs, errs, ses, weak_paths, start)

    strong_paths = 1000 if fast else 4000
    # h = 2^-4 … 2^-8: at 2^-3 Milstein on the cubic problem is still preasymptotic (ratio 0.89).
    strong_levels = range(3, 6) if fast else range(4, 9)
    n_fine = 2 ** max(strong_levels)
    for j, problem in enumerate((sciml_linear(), sciml_linear_2d(), sciml_cubic(), sciml_wave(),
                                 sciml_additive(), sciml_additive_system())):
        gen = torch.Generator(device=device).manual_seed(5000 + j)
        fine = torch.randn(n_fine, strong_paths, problem.noise_dim, generator=gen, dtype=f64,
                           device=device) / math.sqrt(n_fine)
        exact = problem.solution(1.0, fine.sum(0))
        for solver in (EulerMaruyama(), Milstein(), SmallNoiseHeun()):
            theory = solver.strong_order_for(problem.noise_kind)
            if problem.noise_kind.value == "additive" and solver.name == "heun":
                continue  # exact to O(h²) by this problem's structure: see the note on the page
            start, hs, errs, ses = time.perf_counter(), [], [], []
            for level in strong_levels:
                n = 2**level
                table = fine.reshape(n, n_fine // n, strong_paths, -1).sum(1)
                y = solve(problem.sde, problem.initial_state(strong_paths, device=device),
                          (0.0, 1.0), dt=1 / n, method=solver, increments=Table(table, 1 / n)).final
                d = (y - exact).norm(dim=1)
                hs.append(1 / n)
                errs.append(float(d.mean()))
                ses.append(float(d.std()) / math.sqrt(strong_paths))
            mc_row(solver, problem, "strong", "E|Y_T − X_T|", theory, hs, errs, ses,
                   strong_paths, start)
    return {"title": "Problem library: SciML SDEProblemLibrary ports and time-dependent problems",
            "cases": cases, "command": "python scripts/validation.py --only problems",
            "confidence": MC_CONFIDENCE, "min_snr": MC_MIN_SNR}


# ------------------------------------------------------------------------------- plug-ins
# Order-2 SMEs have O(ε²) errors, below the Monte-Carlo noise at the order-1 defaults. SGD: the
# exact SME-2 errors of f are 6.1e-3, 1.4e-3, 3.4e-4 at lr = 1/4, 1/8, 1/16 (local slopes 2.11,
# 2.05) and the standard error was 4.3e-4 at 2·10⁵ paths, so 3.2·10⁶ paths put the smallest at
# about 3 SE (6 min on 2 cores); the SME step lr/8 keeps the Heun error under 10 % of the error.
# Dropout: the GPU command of docs/numerics.md.
def plugin_section(fast: bool, device: str) -> dict:
    from smetool.algorithms.registry import plugins

    runs = [(name, order) for name in sorted(plugins()) for order in plugins()[name].orders]
    if fast:
        runs = [("sgd", 1)]
    cases = [plugin_case(name, order, fast, device) for name, order in runs]
    return {"title": "Plug-ins: weak order of each SME against its algorithm", "cases": cases}


def plugin_case(name: str, order: int, fast: bool, device: str) -> dict:
    """One ``smetool verify NAME [--order 2]`` run at the plug-in's defaults, with its verdicts,
    variance-reduction factors and negative controls."""
    import torch

    from smetool import verify
    from smetool.algorithms.registry import plugins

    spec = plugins()[name]
    algorithm = spec.build(dtype=torch.float64, device=device)
    run = spec.run_defaults(order)
    lrs, paths = list(run["lrs"]), run["n_paths"]
    if fast:
        lrs, paths = lrs[:3], 500
    print(f"  verify {name} --order {order} ({paths} paths)", flush=True)
    result = verify(algorithm, lrs, paths, horizon=run["horizon"], order=order,
                    steps_per_lr=run["steps_per_lr"], method=run["method"], seed=0,
                    device=device, progress=False)
    command = f"smetool verify {name}" + (f" --order {order}" if order != 1 else "")
    if fast:
        command += " --lrs " + ",".join(f"{lr:g}" for lr in lrs) + f" --paths {paths}"
    if device != "cpu":
        command += f" --device {device}"
    reduction: dict[str, list[float]] = {}
    for row in result.rows:
        reduction.setdefault(row.test_function, []).append(row.variance_reduction)
    exact = exact_errors(algorithm, lrs, run["horizon"], order)
    sme_law = getattr(algorithm, "exact_sme_expectations", None)
    sme_exact = {} if sme_law is None else sme_law(lrs, run["horizon"], order)
    table = result.weak_errors
    tests = []
    for k, f in enumerate(table.names):
        v = result.verdicts[f]
        fit = result.fits.get(f)
        errors, stderrs = table.errors[k, -1].tolist(), table.stderrs[k, -1].tolist()
        tests.append({
            "test_function": f, "steps": list(lrs), "errors": errors, "stderrs": stderrs,
            "slope": None if fit is None else fit.slope, "ci": None if fit is None else list(fit.ci),
            "min_snr": min(abs(e) / s for e, s in zip(errors, stderrs)),
            "variance_reduction": [min(reduction[f]), max(reduction[f])],
            "series": series_record(v), "verdict": v.verdict.value, "reasons": list(v.reasons),
            "exact_z": None if f not in exact else [
                (e - x) / s for e, x, s in zip(errors, exact[f], stderrs)],
            "sme_exact_z": None if f not in sme_exact else [
                (m - x) / s for m, x, s in zip(table.reference_means[k, -1].tolist(), sme_exact[f],
                                              table.reference_stderrs[k, -1].tolist())]})
    limits = {lim.part.value: {"control": lim.control, "best": _finite(lim.best),
                               "best_test": lim.best_test,
                               "per_test": {t: _finite(x) for t, x in lim.per_test.items()}}
              for lim in result.detection_limits.values()}
    controls = [{"name": c.name, "why": c.why, "hard": c.hard,
                 "rejected": c.rejected,
                 "rejected_by": sorted(f for f, r in c.rejected_by.items() if r),
                 "errors": {f: c.weak_errors.errors[k, -1].tolist()
                            for k, f in enumerate(c.weak_errors.names)},
                 "stderrs": {f: c.weak_errors.stderrs[k, -1].tolist()
                             for k, f in enumerate(c.weak_errors.names)},
                 "lower_t": {f: _finite(v.lower_t) for f, v in c.verdicts.items()}}
                for c in result.controls.values()]
    return {"plugin": name, "order": order, "command": command, "paths": paths,
            "lrs": lrs, "horizon": run["horizon"], "method": run["method"],
            "steps_per_lr": run["steps_per_lr"], "alpha": result.settings["alpha"],
            "seconds": result.seconds, "tests": tests, "limits": limits, "controls": controls,
            "control_note": "" if result.controls else result.control_note,
            "verdict": result.verdict.value, "reasons": list(result.reasons),
            "report": result.table()}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def exact_errors(algorithm, lrs, horizon: float, order: int) -> dict[str, list[float]]:
    """Closed-form weak errors of the plug-in's test functions, where it has them."""
    import torch

    from smetool.algorithms import HasExactMoments

    if isinstance(algorithm, HasExactMoments):
        return algorithm.exact_weak_errors(lrs, horizon, order)
    moments = getattr(algorithm, "exact_moments", None)
    if moments is None or order != 1:
        return {}
    try:  # heavy-ball SGD: exact whenever its base problem is
        model = moments()
    except TypeError:
        return {}
    errors = model.weak_errors(algorithm.initial_state(1, dtype=torch.float64)[0].numpy(),
                               list(lrs), horizon, orders=[order])
    return {n: errors.series(n, order).tolist() for n in errors.names
            if n in algorithm.test_functions()}


# ----------------------------------------------------------------------------- benchmarks
def benchmark_section(fast: bool, device: str) -> dict:
    benches = [
        ("bench_solvers.py", ["--paths", "500", "--steps", "50", "--repeats", "1"] if fast else [],
         lambda c: f"OU, Euler–Maruyama: {c['paths']:,} paths × {c['dim']} dims × {c['steps']:,} "
                   f"steps, {c['dtype']}"),
        ("bench_dropout.py",
         ["--paths", "200", "--steps", "4", "--naive-paths", "2", "--repeats", "1"] if fast else [],
         lambda c: f"Dropout SME, Euler–Maruyama: {c['steps']} steps, {c['dtype']} (smetool and "
                   f"torchsde on {c['paths']:,} paths, the naive loop on {c['naive_paths']})"),
    ]
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for script, extra, describe in benches:
            out = Path(tmp) / (script + ".json")
            args = ["benchmarks/" + script, "--device", device, *extra]
            print(f"  python {' '.join(args)}", flush=True)
            done = subprocess.run([sys.executable, *args, "--json", str(out)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"{script} failed:\n{done.stderr[-2000:]}")
            record = json.loads(out.read_text())
            cases.append({"benchmark": describe(record["config"]), "command": "python " + " ".join(args),
                          "methods": record["methods"], "ratios": record["ratios"]})
    return {"title": "Benchmarks", "cases": cases}


# --------------------------------------------------------------------------------- render
def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 else f"{x:.{digits - 1}e}"


def _cell(text: str) -> str:
    """Table-safe: a '|' inside a cell would end it."""
    return str(text).replace("|", "\\|")


def _verdict(case: dict) -> str:
    """A verdict cell: pass, **FAIL** or inconclusive with the reasons."""
    verdict = case["verdict"]
    if verdict == "pass":
        return "pass"
    if verdict == "fail":
        return "**FAIL**"
    reasons = case.get("reasons") or []
    return "inconclusive" + (f" ({_cell('; '.join(reasons))})" if reasons else "")


def _mc_row(c: dict) -> str:
    """A table row of a Monte-Carlo order: its errors' range, series coefficients, slope, verdict."""
    fit = ("no fit | – " if c["slope"] is None else
           f"{c['slope']:.3f} | [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]")
    sr = c["series"]
    return (f"| `{c['solver']}` | {c['kind']} | {_cell(c['problem'])} | {c['theory']:g} | "
            f"{c['paths']:,} | {_fmt(c['steps'][0])} … {_fmt(c['steps'][-1])} | "
            f"{c['min_snr']:.1f} | {_coef(sr, 'lower')} | {_coef(sr, 'leading')} | {fit} | "
            f"{_verdict(c)} |")


def _coef(series: dict, which: str) -> str:
    value, se = series[which], series[f"{which}_stderr"]
    if value is None or se is None or not (math.isfinite(value) and math.isfinite(se)):
        return "–"
    return f"{value:+.3g} ± {se:.2g} ({value / se:+.1f})" if se > 0 else f"{value:+.3g}"


def render(record: dict) -> str:
    """The page, from the record alone (a test checks that the committed page is this)."""
    m = record["machine"]
    lines = ["# Validation", "",
             "<!-- generated by scripts/validation.py from docs/validation.json; do not edit -->", ""]
    if record["fast"]:
        lines += ["!!! warning \"Fast mode\"",
                  "    A smoke run with too few paths and steps: its numbers validate nothing.", ""]
    counts = {v: 0 for v in ("pass", "fail", "inconclusive")}
    for section in record["sections"]:
        for case in section.get("cases", []):
            if "verdict" in case:
                counts[case["verdict"]] += 1
    lines += [
        f"Generated by `{record['command']}` on {m['date_utc']} UTC in "
        f"{record['seconds'] / 60:.1f} min: of {sum(counts.values())} checks, "
        f"**{counts['pass']} pass, {counts['fail']} fail, {counts['inconclusive']} "
        "inconclusive**.", "",
        f"Machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPU cores, "
        f"device `{m['device']}`" + (f" ({m['gpu']})" if m.get("gpu") else "") +
        f"; Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
        f"smetool {m['smetool']} at commit `{m['commit']}`"
        + (" with uncommitted changes" if m["uncommitted_changes"] else "") + ".", "",
        "How each verdict is computed is in the script's docstring; in short: exact references "
        f"pass when their last local slope is within {EXACT_TOLERANCE} of the theoretical order; "
        "a Monte-Carlo order is judged by the series test (`smetool.judge_series`): the errors "
        "are fitted as a series c_(p−s) h^(p−s) + c_p h^p + … (s = 1 for weak, ½ for strong "
        "errors) with an allowance for the truncated terms, and the claim **fails** when the "
        f"lower term is demanded (level α = {MC_ALPHA:g} per row), **passes** when it is not and "
        "c_p is resolved, and is **inconclusive** otherwise. A plug-in run passes when no test "
        "function fails, every one's errors are an acceptable series, one resolves c_p, and "
        "every negative control is failed.", "",
    ]
    for section in record["sections"]:
        lines += [f"## {section['title']}", ""]
        kind = section["kind"]
        figure = _figures().figure_link(kind)
        if figure is not None and any("stderrs" in c or "tests" in c for c in section["cases"]):
            lines += [figure, ""]
        if kind == "exact":
            lines += [f"Command: `{section['command']}`.", "",
                      "| what | test function | theory | step range | local slopes (large → small step) "
                      "| passes |",
                      "|---|---|---|---|---|---|"]
            for c in section["cases"]:
                rng = f"{c['step_name']} = {_fmt(c['steps'][0])} … {_fmt(c['steps'][-1])}"
                slopes = ", ".join(f"{s:.3f}" for s in c["local_slopes"])
                lines.append(f"| {_cell(c['name'])} | {_cell(c['what'])} | {c['theory']:g} | {rng} | "
                             f"{slopes} | "
                             f"{_verdict(c)} |")
        elif kind == "solvers":
            lines += [f"Command: `{section['command']}`. Weak errors against the exact solution "
                      "on the same Brownian path (a control variate with known mean), independent "
                      "seeds per step; strong errors `E|Y_T − X_T|` on one Brownian path per "
                      "sample refined across the steps (torchsde `BrownianInterval`).", "",
                      f"| solver | order | problem | theory | paths | h | min \\|e\\|/SE | "
                      "c_lower (t) | c_p (t) | slope | "
                      f"{section['confidence']:.0%} CI | passes |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for c in section["cases"]:
                lines.append(_mc_row(c))
            calls = [c for c in section["cases"] if c.get("convergence")]
            if calls:
                lines += ["", "Each row in one call of `smetool convergence` (its own seeds: the "
                          "same verdict, errors within their standard errors):", ""]
                lines += [f"- `{c['solver']}`, {c['kind']}, {_cell(c['problem'])}: "
                          f"`{c['convergence']}`" for c in calls]
        elif kind == "problems":
            lines += [f"Command: `{section['command']}`. The problems are "
                      "`smetool.exact.sde_problems`: SciML's SDEProblemLibrary problems with "
                      "analytic solutions (`sciml_*`, their default parameters) and "
                      "time-dependent, non-symmetric ones (`additive` with noise B/√(1+t), "
                      "`time_dependent_gbm`, `rotation(scalar)` with an antisymmetric diffusion "
                      "Jacobian). The order in each row is the one the solver declares for the "
                      "problem's noise kind.", "",
                      "Exact weak errors (the scheme's own moments, no randomness):", "",
                      "| solver | problem | quantity | theory | h | local slopes (large → small "
                      "step) | passes |", "|---|---|---|---|---|---|---|"]
            for c in section["cases"]:
                if c["type"] != "exact":
                    continue
                slopes = ", ".join(f"{v:.3f}" for v in c["local_slopes"])
                lines.append(f"| `{c['solver']}` | {_cell(c['problem'])} | {_cell(c['what'])} | "
                             f"{c['theory']:g} | {_fmt(c['steps'][0])} … {_fmt(c['steps'][-1])} "
                             f"| {slopes} | {_verdict(c)} |")
            lines += ["", "Monte Carlo (weak: exact solution on the same path as control variate, "
                      "independent seeds per step; strong: one Brownian path per sample shared by "
                      "every step; their series test's level is approximate). The verdict is the "
                      "series test, as above. Heun's "
                      "strong order on the SciML additive problems is not listed: its "
                      "trapezoidal step integrates their noise exactly to O(h²) (the propagated "
                      "noise coefficient is constant in time there); its declared strong order 1 "
                      "on additive noise is tested on a time-dependent OU "
                      "(`tests/test_solver_suite.py`).", "",
                      f"| solver | order | problem | theory | paths | h | min \\|e\\|/SE | "
                      "c_lower (t) | c_p (t) | slope | "
                      f"{section['confidence']:.0%} CI | passes |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for c in section["cases"]:
                if c["type"] == "mc":
                    lines.append(_mc_row(c))
        elif kind == "plugins":
            lines += ["Each run is `smetool verify` (seed 0) at the plug-in's defaults for that "
                      "order; the command reproduces it. Both sides carry the small-noise control "
                      "variates where the plug-in supports them (*variance reduction*: the factor "
                      "by which they cut the variance of the error estimates, smallest and largest "
                      "over the learning rates); the SME's solver error is removed by Richardson "
                      "extrapolation from steps h, 2h, 4h. The verdict of each test function is "
                      "the series test at the run's level α (0.01 / K over K test functions): "
                      "*c_lower* is the coefficient of lr^(p−1) (lr^0 at order 1) with its "
                      "standard error including the truncation allowance — the test fails the SME "
                      "when it is beyond the quantile — and *c_p* the leading coefficient. *exact "
                      "\\|z\\|* is the largest distance of a measured error from its closed "
                      "form, in its standard errors (where one exists; for `sgd-wd` the SME's "
                      "norm law, the SME side's mean). The slope is the log–log picture.", "",
                      "| command | test function | c_lower (t) | c_p (t) | terms | exact \\|z\\| "
                      "| variance reduction | slope [95 % CI] | seconds | verdict |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for c in section["cases"]:
                for f in c["tests"]:
                    sr = f["series"]
                    zs = f.get("exact_z") or f.get("sme_exact_z")
                    exact = "–" if not zs else f"{max(abs(z) for z in zs):.2f}"
                    slope = ("–" if f["slope"] is None else
                             f"{f['slope']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]")
                    lo, hi = f["variance_reduction"]
                    lines.append(
                        f"| `{c['command']}` | `{f['test_function']}` | {_coef(sr, 'lower')} | "
                        f"{_coef(sr, 'leading')} | {sr['terms'] if sr['terms'] is not None else '–'} | "
                        f"{exact} | {lo:.3g} – {hi:.3g} | {slope} | {c['seconds']:.0f} | "
                        f"{_verdict(f)} |")
                lines.append(f"| `{c['command']}` | **the check** | | | | | | | | "
                             f"**{_verdict(c)}** |")
            derived = [c for c in section["cases"] if c["plugin"] in DERIVED]
            if derived:
                lines += ["", "### Derived SMEs", "",
                          "The SMEs of these plug-ins are not typed in: `smetool.derive_sme` "
                          "derives them from the update rule and its noise law (`b₀ = E A`, "
                          "`Σ = Cov A`, the order-2 drift `b₀ − (lr/2)(∇b₀)b₀`; Li, Tai & E 2019; "
                          "[the tutorial](tutorial-derive-sme.md)); Gaussian dropout's moments are "
                          "closed-form. Their rows above, in short:", "",
                          "| command | verdict | Σ detection limit | controls failed | seconds |",
                          "|---|---|---|---|---|"]
                for c in derived:
                    lim = c["limits"].get("noise covariance Σ")
                    shown = ("–" if lim is None else "∞" if lim["best"] is None
                             else f"{100 * lim['best']:.2g} % (`{lim['best_test']}`)")
                    failed = sum(ctl["rejected"] for ctl in c["controls"])
                    lines.append(f"| `{c['command']}` | {_verdict(c)} | {shown} | "
                                 f"{failed}/{len(c['controls'])} | {c['seconds']:.0f} |")
            lines += ["", "Detection limits — the smallest relative error in a part of the SME that "
                      "each run fails (from the control that scales that part, on the same random "
                      "numbers):", "",
                      "| command | part | limit | by | per test function |", "|---|---|---|---|---|"]
            for c in section["cases"]:
                for part, lim in c["limits"].items():
                    best = "∞ (not seen)" if lim["best"] is None else f"**{100 * lim['best']:.2g} %**"
                    per = ", ".join(f"`{t}` " + ("∞" if x is None else f"{100 * x:.2g} %")
                                    for t, x in lim["per_test"].items())
                    lines.append(f"| `{c['command']}` | {_cell(part)} | {best} | "
                                 f"`{lim['best_test'] or '–'}` | {per} |")
                if not c["limits"]:
                    lines.append(f"| `{c['command']}` | – | – | – | " + (
                        "order 1: the noise covariance enters the error only at O(lr²)" if
                        c["order"] == 1 else "no control scales a part of the SME") + " |")
            lines += ["", "Negative controls (wrong SMEs on the same random numbers; *hard* ones are "
                      "built by `verify` from the detection limits). Each must be failed; "
                      "*failed by* lists the test functions whose verdict for it is fail, with "
                      "the t of the lower coefficient:", "",
                      "| command | wrong SME | kind | failed by |", "|---|---|---|---|"]
            for c in section["cases"]:
                for ctl in c["controls"]:
                    by = ", ".join(f"`{f}` ({ctl['lower_t'][f]:+.1f})" if ctl["lower_t"][f]
                                   is not None else f"`{f}`" for f in ctl["rejected_by"])
                    lines.append(f"| `{c['command']}` | {_cell(ctl['name'] + ': ' + ctl['why'])} "
                                 f"| {'hard' if ctl['hard'] else 'declared'} | "
                                 f"{by or '**none — not rejected**'} |")
                if not c["controls"]:
                    lines.append(f"| `{c['command']}` | – | – | {_cell(c['control_note'])} |")
        elif kind == "benchmarks":
            lines += ["Times are medians over repeats in the same run; ratios compare contenders "
                      "of the same run. This machine may be shared, so absolute times are "
                      "pessimistic.", ""]
            for c in section["cases"]:
                lines += [f"### {c['benchmark']}", "", f"Command: `{c['command']}`.", "",
                          "| method | seconds | path-steps / s |", "|---|---|---|"]
                for name, r in c["methods"].items():
                    lines.append(f"| {name} | {r['seconds']:.3f} | {r['path_steps_per_second']:.3g} |")
                lines += [""] + [f"- {k}: **{v:.2f}×**" for k, v in c["ratios"].items()] + [""]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------- main
SECTIONS = ("exact", "solvers", "problems", "plugins", "benchmarks")


@functools.lru_cache(maxsize=1)
def _figures():
    """scripts/validation_figures.py (loaded by path: this script is also imported by the tests)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("validation_figures",
                                                  Path(__file__).with_name("validation_figures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for validation.json/.md")
    parser.add_argument("--fast", action="store_true", help="smoke run (numbers prove nothing)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="sections to run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render validation.md from the existing validation.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        record = json.loads((out / "validation.json").read_text())
        (out / "validation.md").write_text(render(record))
        _figures().write_figures(record, out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    record = {"fast": args.fast, "machine": machine(args.device), "sections": [],
              "command": "python scripts/validation.py" + " ".join(
                  [""] + (["--fast"] if args.fast else [])
                  + (["--only", *args.only] if list(args.only) != list(SECTIONS) else [])
                  + ([f"--device {args.device}"] if args.device != "cpu" else []))}
    runners = {"exact": lambda: exact_section(args.fast),
               "solvers": lambda: solver_section(args.fast, args.device),
               "problems": lambda: problem_library_section(args.fast, args.device),
               "plugins": lambda: plugin_section(args.fast, args.device),
               "benchmarks": lambda: benchmark_section(args.fast, args.device)}
    for kind in SECTIONS:
        if kind not in args.only:
            continue
        print(f"{kind} ...", flush=True)
        t0 = time.perf_counter()
        section = runners[kind]()
        section.update(kind=kind, seconds=time.perf_counter() - t0)
        record["sections"].append(section)
    record["seconds"] = time.perf_counter() - start
    (out / "validation.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    (out / "validation.md").write_text(render(record))
    figures = _figures().write_figures(record, out)
    print(f"wrote {out / 'validation.json'}, {out / 'validation.md'} and {len(figures)} figures "
          f"({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
