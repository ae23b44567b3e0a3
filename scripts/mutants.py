"""Mutation testing: plausible bugs, each applied to a copy of the tree and killed by a named test.

    python scripts/mutants.py              # every mutant; exit 1 if one survives (or is stale)
    python scripts/mutants.py --list       # the mutants, one per line
    python scripts/mutants.py --only ID    # one mutant (repeat --only for several)

A mutant is a rule of the code that a test must defend: an exact snippet of a file, a replacement
that breaks the rule the way a real bug would, and the pytest node ids meant to kill it. For
each mutant the script copies nothing new: it works in one temporary copy of the tree (the files
``git ls-files`` lists, tracked or untracked but not ignored), replaces the snippet there, runs
the named tests with ``-x -q -p no:cacheprovider`` (``PYTHONPATH`` pointing at the copy, so that
the tests' subprocesses import the mutant too), and puts the file back, checking its bytes. The
working tree is never written.

* **killed**: the named tests fail (pytest exit status 1);
* **survived**: they pass — the rule has no test, add one;
* **stale**: the snippet is not in the file exactly once (the code moved on: update the mutant);
* **error**: pytest could not run the tests (exit status 2–5, e.g. a node id that no longer
  exists).

First, the named tests must pass on the copy without any mutant (the baseline); otherwise a kill
proves nothing and the script stops.

To add a mutant, append a :class:`Mutant` to :data:`MUTANTS`: an id, the file, the original
snippet (copied exactly, unique in the file), the replacement, the tests, and one line on the bug
it stands for.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    description: str


CLI_INPUTS = "tests/test_cli_inputs.py"
NET_AUDIT = "tests/test_net_audit.py"
SEEDS = "tests/test_seed_streams.py"
CALIBRATION = "tests/test_calibration.py"
EXACT = "tests/test_exact_agreement.py"
EXTRAPOLATION = "tests/test_solver_extrapolation.py"
VERDICTS = "tests/test_verdicts.py"
JUDGE = "tests/test_judge.py"
DERIVE = "tests/test_derive_sme.py"

MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- numerics (issue 25)
    Mutant(
        "heun-corrector-at-t", "smetool/solvers/small_noise.py",
        "sde.drift(t + h, predictor)", "sde.drift(t, predictor)",
        ("tests/test_small_noise.py::test_the_corrector_evaluates_the_drift_at_t_plus_h",
         "tests/test_small_noise.py::test_the_mean_is_second_order_with_a_time_dependent_drift"),
        "the small-noise Heun corrector evaluates the drift at t instead of t + h (non-additive "
        "branch)"),
    Mutant(
        "chunk-seed-without-step", "smetool/montecarlo/weak.py",
        "chunk_seed(self.seed, self.step_index, c, stream)", "chunk_seed(self.seed, c, stream)",
        (f"{SEEDS}::test_each_step_has_its_own_stream_on_both_sides",),
        "the chunk seed lacks the step index: every learning rate gets the same random numbers"),
    Mutant(
        "chunk-seed-without-side", "smetool/montecarlo/weak.py",
        "chunk_seed(self.seed, self.step_index, c, stream)",
        "chunk_seed(self.seed, self.step_index, c, 0)",
        (f"{SEEDS}::test_each_step_has_its_own_stream_on_both_sides",),
        "both sides draw the same stream without common random numbers being asked for"),
    Mutant(
        "chunk-seed-without-chunk", "smetool/montecarlo/weak.py",
        "chunk_seed(self.seed, self.step_index, c, stream)",
        "chunk_seed(self.seed, self.step_index, 0, stream)",
        (f"{SEEDS}::test_each_chunk_has_its_own_stream_and_the_streams_are_reproducible",),
        "every chunk of a step repeats the first chunk's random numbers"),
    # ---------------------------------------------------------------- inputs (issue 25)
    Mutant(
        "reserved-flags-of-common-only", "smetool/cli.py",
        "clashing_plugins(table, [parser, common, _Parser(parents=[common])])",
        "clashing_plugins(table, [common])",
        (f"{CLI_INPUTS}::test_a_plugin_option_that_clashes_is_listed_broken_and_breaks_nothing",),
        "the reserved flags omit the root parser's (--debug) and the sub-command's (--help)"),
    Mutant(
        "reserved-by-name-not-flag", "smetool/cli_inputs.py",
        "flags = [o.flag for o in spec.options if o.flag in taken]",
        "flags = [o.flag for o in spec.options if o.name in taken]",
        (f"{CLI_INPUTS}::test_a_plugin_option_that_clashes_is_listed_broken_and_breaks_nothing",),
        "plug-in options compared by name with the flags: no clash is ever found"),
    Mutant(
        "scheduler-file-not-checked", "smetool/montecarlo/cluster.py",
        "        if not path.is_file():", "        if False:",
        (f"{CLI_INPUTS}::test_a_missing_scheduler_file_fails_at_once",),
        "a missing scheduler file is handed to Dask, which waits for it for ever"),
    Mutant(
        "scheduler-address-not-checked", "smetool/montecarlo/cluster.py",
        "    if _HOST_PORT.match(where):\n        return where",
        "    if True:\n        return where",
        (f"{CLI_INPUTS}::test_a_nonsense_scheduler_address_fails_at_once_without_dask_noise",),
        "a nonsense scheduler address goes to Dask (a traceback and a 60 s wait)"),
    Mutant(
        "scheduler-timeout-ignored", "smetool/cli.py",
        "dask_executor(scheduler=args.scheduler, timeout=args.scheduler_timeout)",
        "dask_executor(scheduler=args.scheduler)",
        (f"{CLI_INPUTS}::test_an_unreachable_scheduler_fails_within_the_stated_timeout",),
        "--scheduler-timeout is not passed on: Dask's 30 s default applies"),
    Mutant(
        "json-folder-not-checked", "smetool/cli_inputs.py",
        "    if not parent.exists():", "    if False:",
        (f"{CLI_INPUTS}::test_json_in_a_missing_folder_fails_before_the_run",),
        "a missing folder of --json is found only when the result is written"),
    Mutant(
        "negative-values-not-joined", "smetool/cli_inputs.py",
        "if (token in takes_value and nxt is not None", "if (False and nxt is not None",
        (f"{CLI_INPUTS}::test_negative_learning_rates_are_our_one_line_error",),
        "--lrs -0.1,0.05 reaches argparse as an option: 'expected one argument'"),
    Mutant(
        "out-without-matplotlib", "smetool/cli.py",
        "        require_plotting(\"--out\")", "        pass",
        (f"{CLI_INPUTS}::test_plots_without_matplotlib_fail_before_the_run",),
        "--out without matplotlib fails only after the run"),
    Mutant(
        "threads-not-restored", "smetool/cli.py",
        "        torch.set_num_threads(threads)  #", "        pass  #",
        (f"{CLI_INPUTS}::test_threads_sets_torchs_threads_for_the_run_and_restores_them",),
        "main() leaves torch's thread count changed for the program that called it"),
    # ---------------------------------------------------------------- dropout_net (issue 25)
    Mutant(
        "batchnorm-accepted", "smetool/models/net_audit.py",
        "    if isinstance(module, nn.modules.batchnorm._BatchNorm):", "    if False:",
        (f"{NET_AUDIT}::test_modules_the_sme_cannot_model_are_refused_by_path",),
        "batch normalisation is not refused by its type (only the generic train/eval check "
        "would see it, without saying why)"),
    Mutant(
        "alpha-dropout-accepted", "smetool/models/net_audit.py",
        "    if isinstance(module, (nn.AlphaDropout, nn.FeatureAlphaDropout)):", "    if False:",
        (f"{NET_AUDIT}::test_modules_the_sme_cannot_model_are_refused_by_path",),
        "alpha dropout is not refused by its type"),
    Mutant(
        "functional-calls-not-traced", "smetool/models/net_audit.py",
        "    for name, call in _traced_calls(net, x):", "    for name, call in []:",
        (f"{NET_AUDIT}::test_functional_dropout_in_forward_is_refused",),
        "F.dropout inside forward is not traced (silently ignored in eval mode)"),
    Mutant(
        "mode-check-skipped", "smetool/models/net_audit.py",
        "    name = _mode_dependent(net, x)", "    name = None",
        (f"{NET_AUDIT}::test_modules_the_sme_cannot_model_are_refused_by_path",),
        "a module that differs between train() and eval() is accepted"),
    Mutant(
        "channel-layout-not-checked", "smetool/models/net_dropout.py",
        "                check_channel_layout(name, layer, shape)", "                pass",
        (f"{NET_AUDIT}::test_channel_dropout_on_another_layout_than_torchs_is_refused",),
        "nn.Dropout1d on (N, C) features gets per-feature masks; torch drops whole examples"),
    # ---------------------------------------------- right numbers and verdicts (issue 22)
    Mutant(
        "cv-sign", "smetool/montecarlo/weak.py",
        "self.mean = used.mean - shift * cv.mean", "self.mean = used.mean + shift * cv.mean",
        (f"{CALIBRATION}::test_verify_is_calibrated",),
        "the control variates subtracted as (2 − β)·c while the spread of g − βc is reported"),
    Mutant(
        "extrapolate-first-order", "smetool/verification/verify.py",
        "levels = 3 if use_extrapolation else 2", "levels = 2",
        (f"{EXACT}::test_errors_agree_with_the_closed_form",
         f"{EXACT}::test_scalar_sgd_order_2_at_its_defaults_agrees_and_its_solver_residual_is_below_the_noise"),
        "the SME solver's error removed as if first order in the step (two levels, h and 2h)"),
    Mutant(
        "solver-order-not-declared", "smetool/verification/producers.py",
        "solver_order=self.solver.weak_order_for(self.sde.noise_kind) if self.levels > 1 else None,",
        "solver_order=2.0 if self.levels > 1 else None,",
        (f"{EXTRAPOLATION}::test_the_producer_combines_its_levels_with_the_declared_order",),
        "the Richardson weights of a weak order-2 scheme for the Heun scheme on "
        "state-dependent noise: its O(h) term is left in"),
    Mutant(
        "coarse-levels-without-cv", "smetool/montecarlo/weak.py",
        "cv = combined(controls) if sample.extrapolate and every_level else controls[0]",
        "cv = controls[0]",
        (f"{EXTRAPOLATION}::test_every_level_of_the_extrapolation_carries_its_control_variates",),
        "the extrapolated term carries no control variates (the finest level's only)"),
    Mutant(
        "no-truncation-allowance", "smetool/stats/series.py",
        "return coef, math.sqrt(se**2 + beta**2 * (c_next**2 + se_next**2))",
        "return coef, se",
        (f"{VERDICTS}::test_the_false_failure_probability_is_at_most_alpha",),
        "the series test ignores the bias of the omitted terms: right SMEs fail far above α"),
    Mutant(
        "lower-term-not-tested", "smetool/stats/series.py",
        "    if abs(t_lower) > ext.quantile:", "    if False:",
        (f"{VERDICTS}::test_a_small_lower_order_term_under_a_large_one_is_failed",),
        "a demanded lower-order term does not fail the claim"),
    Mutant(
        "no-bonferroni", "smetool/verification/judge.py",
        "return float(false_failure) / max(1, len(tests))", "return float(false_failure)",
        (f"{JUDGE}::test_the_level_of_each_test_function_is_bonferroni",),
        "every test function tested at the check's level: the check fails right SMEs K× as often"),
    Mutant(
        "inconclusive-control-rejected", "smetool/verification/result.py",
        "return {name: v.failed for name, v in self.verdicts.items()}",
        "return {name: not v.passed for name, v in self.verdicts.items()}",
        (f"{JUDGE}::test_a_control_is_rejected_only_when_a_test_function_fails_it",),
        "a negative control that no test function fails counts as rejected"),
    Mutant(
        "detection-limit-without-change", "smetool/stats/series.py",
        "return verdict.lower_quantile * verdict.lower_stderr * abs(change) / abs(sens)",
        "return verdict.lower_quantile * verdict.lower_stderr / abs(sens)",
        (f"{JUDGE}::test_the_noise_limit_is_the_lower_coefficients_resolution_over_its_sensitivity",),
        "the detection limit ignores how far the measuring control is from the SME"),
    Mutant(
        "hard-control-at-the-limit", "smetool/verification/judge.py",
        "change = sign * 2.0 * noise.best", "change = sign * noise.best",
        (f"{JUDGE}::test_the_hard_controls_sit_at_twice_the_limit",),
        "the hard Σ controls at the detection limit, where they fail only half the time"),
    Mutant(
        "fit-order-without-inflation", "smetool/stats/orders.py",
        "inflation = max(1.0, rchi2) if dof > 0 else 1.0", "inflation = 1.0",
        (f"{VERDICTS}::test_the_slope_interval_is_widened_by_the_lack_of_fit",),
        "the log–log slope's interval ignores a lack of fit"),
    # ---------------------------------------------------------------- derived SMEs (issue 23)
    Mutant(
        "derived-drop-order2-term", "smetool/algorithms/derive.py",
        "        return mean - 0.5 * self.lr * self._support.directional(x, mean)\n",
        "        return mean\n",
        (f"{DERIVE}::test_sgd_least_squares_derived_equals_hand_written",
         f"{DERIVE}::test_dropout_net_last_layer_derived_equals_hand_written"),
        "the derived order-2 SME loses its drift correction −(lr/2)(∇b₀)b₀"),
    Mutant(
        "derived-transposed-jacobian", "smetool/algorithms/derive_core.py",
        "return functorch_exclusive(torch.func.jvp)(self._mean_uncached, (x,), (u,))[1]",
        "return torch.func.vjp(self._mean_uncached, x)[1](u)[0]",
        (f"{DERIVE}::test_order2_drift_of_a_rotational_update_uses_the_jacobian_not_its_transpose",),
        "the order-2 correction uses (∇b₀)ᵀ b₀ (equal to (∇b₀) b₀ for every gradient update: only a "
        "rotational update tells them apart)"),
    Mutant(
        "batch-mean-without-1-over-b", "smetool/algorithms/derive_batch.py",
        "self.c = 1.0 / B if replacement", "self.c = 1.0 if replacement",
        (f"{DERIVE}::test_batch_mean_sums_over_examples_exactly",),
        "the mini-batch identity forgets that averaging B examples divides their noise by B"),
    Mutant(
        "gaussian-dropout-without-square-columns", "smetool/models/gaussian_dropout.py",
        "return sigma + 2.0 * self.v * self.v * torch.einsum(\"prd,pre->pde\", cols, cols)",
        "return sigma",
        (f"{DERIVE}::test_gaussian_dropout_closed_form_equals_gauss_hermite_enumeration",),
        "Gaussian dropout's covariance misses the 2v² B_rr B_rrᵀ terms of Var(η² − v) = 2v² "
        "(Bernoulli dropout's two-point identity used for a Gaussian)"),
    Mutant(
        "sampled-noise-uncompensated", "smetool/algorithms/derive.py",
        "        return self.speed / (self.lr * self.drift_samples)\n",
        "        return 0.0\n",
        (f"{DERIVE}::test_sampled_sme_steps_have_the_exact_covariance",),
        "the sampled SME's Euler step adds the drift estimate's noise on top of the full noise "
        "(covariance h Σ (lr + h/K) instead of lr h Σ)"),
)


def tree_files() -> list[str]:
    """The files of the tree: tracked, and untracked ones that git does not ignore."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_tree(dest: Path) -> None:
    for rel in tree_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, f"timed out after {timeout:g} s"  # a hang is a failure of the tests
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, lines[-1] if lines else ""


def check_imports_copy(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    where = subprocess.run([sys.executable, "-c", "import smetool; print(smetool.__file__)"],
                           cwd=copy, env=env, capture_output=True, text=True, check=True).stdout
    if not Path(where.strip()).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"mutants: the copy's tests would import smetool from {where.strip()}, "
                         f"not from the copy {copy}; nothing was run.")


def apply(copy: Path, mutant: Mutant) -> tuple[Path, bytes] | None:
    """Write the mutant into the copy; ``(path, original bytes)``, or ``None`` when stale."""
    path = copy / mutant.file
    if not path.is_file():
        return None
    before = path.read_bytes()
    text = before.decode()
    if text.count(mutant.original) != 1:
        return None
    path.write_text(text.replace(mutant.original, mutant.replacement))
    return path, before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--only", action="append", metavar="ID", help="run this mutant only "
                        "(repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds for one mutant's tests (a hang counts as killed)")
    args = parser.parse_args(argv)
    ids = [m.id for m in MUTANTS]
    if len(set(ids)) != len(ids):
        raise SystemExit("mutants: ids must be unique")
    if args.list:
        for m in MUTANTS:
            print(f"{m.id:<32} {m.file:<34} {m.description}")
        return 0
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only]
    unknown = sorted(set(args.only or ()) - set(ids))
    if unknown:
        raise SystemExit(f"mutants: unknown id {unknown[0]!r}; see --list")
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="smetool-mutants-") as tmp:
        copy = Path(tmp) / "tree"
        copy_tree(copy)
        check_imports_copy(copy)
        baseline = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        code, last = run_tests(copy, baseline, args.timeout)
        if code != 0:
            print(f"baseline: the named tests fail without any mutant ({last}); fix them first.")
            return 1
        print(f"baseline: {len(baseline)} named tests pass without mutants ({last})", flush=True)
        for m in chosen:
            start = time.perf_counter()
            applied = apply(copy, m)
            if applied is None:
                results[m.id] = "stale"
                print(f"{'STALE':<9} {m.id}: the snippet is not in {m.file} exactly once", flush=True)
                continue
            path, before = applied
            try:
                code, last = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_bytes(before)
            if path.read_bytes() != before:
                raise SystemExit(f"mutants: {path} was not restored; stopping.")
            status = {0: "survived", 1: "killed"}.get(code, "error")
            results[m.id] = status
            print(f"{status.upper():<9} {m.id} ({time.perf_counter() - start:.0f} s): "
                  f"{m.description} [{last}]", flush=True)
    killed = sum(s == "killed" for s in results.values())
    print(f"\nkill rate: {killed}/{len(results)} mutants killed"
          + "".join(f", {n} {s}" for s in ("survived", "stale", "error")
                    if (n := sum(v == s for v in results.values()))))
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
