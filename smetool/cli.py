"""The ``smetool`` command line. No numerics here: it parses, calls the library and writes files."""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .algorithms.registry import get_plugin, plugin_errors, plugins
from .algorithms.spec import PluginSpec
from .cli_analysis import add_analysis_commands, run_analysis
from .cli_convergence import add_parser as add_convergence_parser
from .cli_convergence import run as run_convergence
from .cli_inputs import (
    CLIError,
    clashing_plugins,
    join_negative_values,
    lr_list,
    non_negative_int,
    output_file,
    output_folder,
    plugin_option_type,
    positive_float,
    positive_int,
    probability,
    require_plotting,
)
from .montecarlo import check_scheduler, dask_executor
from .solvers import SOLVERS
from .verification import VerifyResult, verify

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (which command, what is wrong, where help is), not usage."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Show a default only where there is one to show: not for "unset" (None) or off flags, and
    not where the help text already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default in (None, argparse.SUPPRESS) or action.default is False
        if unset or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _common_verify_options() -> argparse.ArgumentParser:
    """The options every plug-in's ``smetool verify NAME`` takes (a parent parser)."""
    common = _Parser(add_help=False)
    add = common.add_argument
    add("--lrs", type=lr_list, default=None,
        help="learning rates, e.g. '0.04,0.02,0.01' (default: the plug-in's)")
    add("--horizon", type=positive_float, default=None,
        help="horizon T in SDE time; T/lr steps of the algorithm (default: the plug-in's)")
    add("--paths", type=positive_int, default=None,
        help="paths per side and learning rate (default: the plug-in's)")
    add("--order", type=positive_int, default=1, help="SME order to test")
    add("--steps-per-lr", type=positive_int, default=None,
        help="SME steps per learning rate (even); the SME step is lr/steps (default: the "
        "plug-in's)")
    add("--method", default=None, help="SME solver (see `smetool list`; default: the plug-in's)")
    add("--seed", type=non_negative_int, default=0, help="random seed")
    add("--device", choices=("cpu", "cuda"), default="cpu", help="where to simulate")
    add("--dtype", choices=("float32", "float64"), default="float64",
        help="simulation precision (statistics are always float64)")
    add("--chunk-size", type=positive_int, default=None,
        help="paths per chunk, to bound memory (default: all paths when they fit in memory, on "
        "the CPU at most 20000)")
    add("--compile", choices=("auto", "on", "off"), default="auto",
        help="run the hot kernels compiled with torch.compile (auto: on CUDA from 100000 paths)")
    add("--variance-reduction", choices=("quadratic", "tangent", "none"), default=None,
        help="small-noise control variates on both sides (default: the best the plug-in "
        "supports)")
    add("--no-controls", action="store_true",
        help="do not run the plug-in's negative controls (wrong SMEs that must be rejected)")
    add("--no-hard-controls", action="store_true",
        help="at order 2, do not run the hard controls (Σ off by twice the detection limit, "
        "diagonal Σ, half the drift correction) in a second pass")
    add("--false-failure", type=probability, default=0.01,
        help="probability that a right SME fails the check (split over the test functions)")
    add("--noise-modes", type=non_negative_int, default=2,
        help="at order 2, test functions added along the leading eigenvectors of Σ")
    add("--no-extrapolation", action="store_true",
        help="estimate the SME by its finest solve instead of the Richardson combination of "
        "steps h, 2h, 4h (the solver-error column then shows the finest level's error)")
    add("--out", default=None,
        help="folder for result.json, errors.csv, errors.png and citation.bib (default: print only)")
    add("--json", default=None, help="also write the JSON result to this path")
    add("--plot", default=None, help="also write the log-log plot (PNG) to this path")
    add("--checkpoint-dir", default=None,
        help="folder for per-learning-rate checkpoints; rerun the same command to resume a "
        "killed run")
    add("--quiet", action="store_true", help="no progress bars")
    _add_threads(common)
    add("--scheduler-timeout", type=positive_float, default=10.0, metavar="SECONDS",
        help="with --scheduler: give up when the scheduler does not answer within this time")
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=positive_int, default=None,
        help="run the chunks on a local Dask cluster of N process workers (needs "
        "smetool[cluster]); same numbers as without it. A chunk is the unit of work: give "
        "--chunk-size so that each learning rate has several chunks per worker")
    where.add_argument(
        "--scheduler", default=None, metavar="ADDRESS",
        help="run the chunks on a running Dask cluster: tcp://HOST:8786 or a scheduler file "
        "(.json); same numbers as without it")
    return common


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=positive_int, default=1,
        help="PyTorch threads of this process (torch.set_num_threads). One by default: the "
        "kernels are many small operations, and extra threads mostly contend with each other "
        "and with other jobs on the machine (docs/performance.md); --workers processes get one each")


def _add_plugin_parser(verify_sub: Any, spec: PluginSpec,
                       common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``smetool verify NAME``: the common options and the plug-in's own, from its declaration."""
    parser = verify_sub.add_parser(
        spec.name, parents=[common], help=spec.description, formatter_class=_HelpFormatter,
        description=f"{spec.description}\n\nSME orders {', '.join(str(o) for o in spec.orders)}; "
        "defaults:\n" + "\n".join(f"  --order {o}: {_run_defaults_text(spec, o)}"
                                    for o in spec.orders),
    )
    for option in spec.options:
        parser.add_argument(option.flag, dest=f"plugin_{option.name}", type=plugin_option_type(option),
                            default=option.default, help=option.help.replace("%", "%%"))
    return parser


def _build_parser() -> argparse.ArgumentParser:
    table = plugins()
    parser = _Parser(
        prog="smetool",
        description="Stochastic modified equations of training algorithms: verify weak orders, "
        "list solvers and plug-ins, analyse and compare algorithms.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _common_verify_options()
    clashes = clashing_plugins(table, [parser, common, _Parser(parents=[common])])
    table = {name: spec for name, spec in table.items() if name not in clashes}

    ver = sub.add_parser(
        "verify",
        help="measure the weak error of an SME against its discrete algorithm and fit the order",
        description="Run the discrete algorithm and its SME on many paths for several learning "
        "rates, print the weak-error table with standard errors and the fitted order with its "
        "confidence interval. Defaults depend on the plug-in; the table at the end lists them, "
        "and `smetool verify NAME --help` lists a plug-in's own options.",
        epilog=_plugin_defaults_table(table),
        formatter_class=_HelpFormatter,
    )
    verify_sub = ver.add_subparsers(dest="algorithm", metavar="ALGORITHM", parser_class=_Parser,
                                    help=f"plug-in name: {', '.join(sorted(table))}")
    commands: dict[str, argparse.ArgumentParser] = {"verify": ver}
    for name, spec in sorted(table.items()):
        commands[f"verify {name}"] = _add_plugin_parser(verify_sub, spec, common)
    for name, why in sorted(clashes.items()):  # a command that only says why it cannot run
        commands[f"verify {name}"] = verify_sub.add_parser(name, help=f"BROKEN: {why}",
                                                           add_help=False)

    commands["convergence"] = add_convergence_parser(sub, _HelpFormatter)
    _add_threads(commands["convergence"])

    commands["list"] = sub.add_parser(
        "list", help="list solvers and plug-ins with their orders",
        description="List the SDE solvers (weak and strong order, noise kinds) and the plug-ins "
        "(SME orders, problem, papers).")

    analysis = add_analysis_commands(sub, table, _Parser, _HelpFormatter)
    for command in analysis.values():
        _add_threads(command)
    commands.update(analysis)
    parser.set_defaults(commands=commands, broken=clashes)
    return parser


def _run_defaults_text(spec: PluginSpec, order: int) -> str:
    d = spec.run_defaults(order)
    lrs = ",".join(f"{lr:g}" for lr in d["lrs"])
    return (f"lrs {lrs}, T={d['horizon']:g}, {d['n_paths']} paths, SME step "
            f"lr/{d['steps_per_lr']}, solver {d['method']}")


def _plugin_defaults_table(table: dict[str, PluginSpec]) -> str:
    """The defaults of every plug-in, for the end of ``smetool verify --help``."""
    lines = ["plug-in defaults (--lrs / --horizon / --paths / --steps-per-lr / --method, and the "
             "plug-in's own options; other orders in `smetool verify NAME --help`):"]
    width = max(len(name) for name in table)
    for name, spec in sorted(table.items()):
        lrs = ",".join(f"{lr:g}" for lr in spec.lrs)
        own = " ".join(f"{o.flag} {o.default}" for o in spec.options)
        lines.append(f"  {name:<{width}}  {lrs}  T={spec.horizon:g}  {spec.n_paths} paths  "
                     f"steps {spec.steps_per_lr}  {spec.method}  {own}".rstrip())
    lines.append("\nexample: smetool verify dropout --keep-prob 0.8 --out out/p08")
    return "\n".join(lines)


def _cmd_list(clashes: dict[str, str]) -> int:
    print("solvers (smetool.solve(..., method=NAME)):")
    for name, cls in SOLVERS.items():
        d = cls().describe()
        strong = "-" if d["strong_order"] is None else f"{d['strong_order']:g}"
        print(f"  {name:<10} weak order {d['weak_order']:g}, strong order {strong:<4} "
              f"noise: {', '.join(d['noise_kinds'])}")
    print("\nplug-ins (smetool verify NAME):")
    broken = {**plugin_errors(), **clashes}
    table = {name: spec for name, spec in plugins().items() if name not in broken}
    width = max(len(name) for name in [*table, *broken])
    for name, spec in sorted(table.items()):
        orders = ", ".join(str(o) for o in spec.orders)
        cites = ", ".join(ref.key for ref in spec.references)
        print(f"  {name:<{width}} SME orders {orders:<6} {spec.description}"
              + (f" [{cites}]" if cites else ""))
    for name, why in sorted(broken.items()):
        print(f"  {name:<{width}} BROKEN: {why}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    spec = get_plugin(args.algorithm)
    options = {o.name: getattr(args, f"plugin_{o.name}") for o in spec.options}
    # Every input before the work: files, folders, optional dependencies, the scheduler's form.
    json_path = output_file("--json", args.json)
    plot_path = output_file("--plot", args.plot)
    if args.plot is not None:
        require_plotting("--plot", args.plot)
    if args.out is not None:
        require_plotting("--out")
    if args.scheduler is not None:
        check_scheduler(args.scheduler, "--scheduler")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False).")
    if args.order not in spec.orders:
        raise CLIError(f"--order must be one of {', '.join(str(o) for o in spec.orders)} for "
                       f"{spec.name}; got {args.order}.")
    defaults = spec.run_defaults(args.order)
    steps_per_lr = args.steps_per_lr or defaults["steps_per_lr"]
    if steps_per_lr % 2:
        raise CLIError(f"--steps-per-lr must be even; got {steps_per_lr}.")
    if args.method is not None and args.method not in SOLVERS:
        raise CLIError(f"--method must be one of {', '.join(SOLVERS)}; got {args.method!r}.")
    out = output_folder("--out", args.out)
    checkpoint = output_folder("--checkpoint-dir", args.checkpoint_dir)
    dtype = getattr(torch, args.dtype)
    algorithm = spec.build(dtype=dtype, device=args.device, **options)
    for line in algorithm.plan_notes(args.lrs or list(defaults["lrs"]),
                                     args.horizon or defaults["horizon"],
                                     args.paths or defaults["n_paths"], args.order, steps_per_lr):
        print(line, file=sys.stderr)
    with _executor(args) as executor:
        result = verify(
            algorithm, args.lrs or list(defaults["lrs"]), args.paths or defaults["n_paths"],
            horizon=args.horizon or defaults["horizon"], order=args.order,
            steps_per_lr=steps_per_lr, method=args.method or defaults["method"], seed=args.seed,
            chunk_size=args.chunk_size, dtype=dtype, device=args.device, progress=not args.quiet,
            compile={"auto": None, "on": True, "off": False}[args.compile],
            checkpoint=checkpoint, variance_reduction=args.variance_reduction,
            controls=not args.no_controls, hard_controls=not args.no_hard_controls,
            false_failure=args.false_failure, noise_modes=args.noise_modes,
            extrapolate=False if args.no_extrapolation else None, executor=executor,
            settings={"problem": spec.describe(algorithm), "plugin": spec.name, "options": options,
                      "threads": args.threads},
        )
    print(result.table())
    _write_outputs(result, out, json_path, plot_path)
    return 0


def _executor(args: argparse.Namespace) -> Any:
    """The executor of ``--workers`` / ``--scheduler`` (a context manager), or none."""
    if args.workers is not None:
        return dask_executor(workers=args.workers)
    if args.scheduler is None:
        return contextlib.nullcontext()
    try:
        return dask_executor(scheduler=args.scheduler, timeout=args.scheduler_timeout)
    except OSError as exc:  # Dask's connect timeout
        raise CLIError(f"--scheduler: no scheduler answered at {args.scheduler!r} within "
                       f"{args.scheduler_timeout:g} s (--scheduler-timeout): {exc}.") from None


def _write_outputs(result: VerifyResult, out: Path | None, json_path: Path | None,
                   plot_path: Path | None) -> None:
    written: list[Path] = []
    if out is not None:
        result.to_json(str(out / "result.json"))
        result.plot(str(out / "errors.png"))
        _write_csv(result, out / "errors.csv")
        (out / "citation.bib").write_text(result.citation() + "\n")
        written += [out / "result.json", out / "errors.png", out / "errors.csv", out / "citation.bib"]
    if json_path is not None:
        result.to_json(str(json_path))
        written.append(json_path)
    if plot_path is not None:
        result.plot(str(plot_path))
        written.append(plot_path)
    for path in written:
        print(f"wrote {path}")


def _write_csv(result: VerifyResult, path: Path) -> None:
    rows = [r.to_dict() for r in result.rows]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smetool`` command; returns the exit status (0 on success)."""
    parser = _build_parser()
    commands = parser.get_default("commands")
    argv = join_negative_values(sys.argv[1:] if argv is None else list(argv),
                                [parser, *commands.values()])
    args, extra = parser.parse_known_args(argv)
    key = f"{args.command} {args.algorithm}" if args.command in ("verify", "analyze") \
        and getattr(args, "algorithm", None) else args.command
    if args.command == "verify" and args.algorithm in args.broken:
        commands[key].exit(2, f"smetool {key}: error: plug-in {args.algorithm!r} is installed but "
                              f"broken: {args.broken[args.algorithm]}.\n")
    if extra:  # name the command whose options these are not
        commands.get(key, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in ("verify", "analyze") and not args.algorithm:
        commands[args.command].error(f"name a plug-in: smetool {args.command} ALGORITHM")
    threads = torch.get_num_threads()
    try:
        if args.command == "list":
            return _cmd_list(args.broken)
        torch.set_num_threads(args.threads)
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "convergence":
            return run_convergence(args)
        return run_analysis(args, plugins(), lambda path: output_folder("--out", path))
    except KeyboardInterrupt:
        print("smetool: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, FloatingPointError, OSError, RuntimeError,
            ImportError) as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"smetool {key}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # main() may be called inside a program that set its own


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
