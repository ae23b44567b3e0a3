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
from .algorithms.spec import Option, PluginSpec
from .analysis.network import NETWORK_REFERENCES, analyze_network
from .analysis.report import REFERENCES as ANALYSIS_REFERENCES
from .analysis.report import analyze_dropout
from .analysis.subjects import ARCHITECTURES, BUILTIN_SETTINGS, builtin_subject
from .bibliography import format_citation
from .cli_convergence import add_parser as add_convergence_parser
from .cli_convergence import run as run_convergence
from .montecarlo import dask_executor
from .solvers import SOLVERS
from .verification import VerifyResult, verify

__all__ = ["main"]


class CLIError(Exception):
    """A user error, printed as one line without a traceback."""


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0; got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {value:g}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {value:g}")
    return value


def _lr_list(text: str) -> list[float]:
    return [_positive_float(t) for t in text.replace(",", " ").split()]


def _window_list(text: str) -> tuple[int, ...]:
    values = tuple(_positive_int(t) for t in text.replace(",", " ").split())
    if not values or min(values) < 20:
        raise argparse.ArgumentTypeError(f"must be step counts ≥ 20; got {text!r}")
    return values


def _output_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".smetool-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CLIError(f"--out: cannot write to {str(out)!r} ({exc.strerror or exc}).") from None
    return out


def _common_verify_options() -> argparse.ArgumentParser:
    """The options every plug-in's ``smetool verify NAME`` takes (a parent parser)."""
    common = _Parser(add_help=False)
    add = common.add_argument
    add("--lrs", type=_lr_list, default=None,
        help="learning rates, e.g. '0.04,0.02,0.01' (default: the plug-in's)")
    add("--horizon", type=_positive_float, default=None,
        help="horizon T in SDE time; T/lr steps of the algorithm (default: the plug-in's)")
    add("--paths", type=_positive_int, default=None,
        help="paths per side and learning rate (default: the plug-in's)")
    add("--order", type=int, default=1, help="SME order to test")
    add("--steps-per-lr", type=_positive_int, default=None,
        help="SME steps per learning rate (even); the SME step is lr/steps (default: the "
        "plug-in's)")
    add("--method", default=None, help="SME solver (see `smetool list`; default: the plug-in's)")
    add("--seed", type=int, default=0, help="random seed")
    add("--device", choices=("cpu", "cuda"), default="cpu", help="where to simulate")
    add("--dtype", choices=("float32", "float64"), default="float64",
        help="simulation precision (statistics are always float64)")
    add("--chunk-size", type=_positive_int, default=None,
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
    add("--false-failure", type=_probability, default=0.01,
        help="probability that a right SME fails the check (split over the test functions)")
    add("--noise-modes", type=_nonnegative_int, default=2,
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
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=_positive_int, default=None,
        help="run the chunks on a local Dask cluster of N process workers (needs "
        "smetool[cluster]); same numbers as without it. A chunk is the unit of work: give "
        "--chunk-size so that each learning rate has several chunks per worker")
    where.add_argument(
        "--scheduler", default=None, metavar="ADDRESS",
        help="run the chunks on a running Dask cluster: tcp://HOST:8786 or a scheduler file "
        "(.json); same numbers as without it")
    return common


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
        parser.add_argument(option.flag, dest=f"plugin_{option.name}", type=_argparse_type(option),
                            default=option.default, help=option.help.replace("%", "%%"))
    return parser


def _argparse_type(option: Option) -> Any:
    """The option's converter, its errors turned into argparse's one-line messages."""
    def convert(text: str) -> Any:
        try:
            return option.type(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(f"{exc} (from {text!r})") from None

    convert.__name__ = option.name  # argparse names the converter in some messages
    return convert


def _build_parser() -> argparse.ArgumentParser:
    table = plugins()
    parser = _Parser(
        prog="smetool",
        description="Stochastic modified equations of training algorithms: verify weak orders, "
        "list solvers and plug-ins, analyse dropout.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    common = _common_verify_options()
    commands: dict[str, argparse.ArgumentParser] = {"verify": ver}
    for name, spec in sorted(table.items()):
        commands[f"verify {name}"] = _add_plugin_parser(verify_sub, spec, common)

    commands["convergence"] = add_convergence_parser(sub, _HelpFormatter)

    commands["list"] = sub.add_parser(
        "list", help="list solvers and plug-ins with their orders",
        description="List the SDE solvers (weak and strong order, noise kinds) and the plug-ins "
        "(SME orders, problem, papers).")

    ana = sub.add_parser(
        "analyze",
        help="the dropout papers' analyses (flatness, variance-flatness, alignment, condensation)",
        description="Train dropout GD and plain GD from several initialisations, then measure "
        "flatness, the variance-flatness relations on gradient and trajectory data, "
        "Hessian-variance alignment and condensation, each finding with a verdict (holds / fails "
        "/ inconclusive) from the seed-to-seed spread; writes report.json and the figures.\n\n"
        "Without --model: the embedded 1-D two-layer problem in closed form (or --data FILE.npz), "
        "with the implicit regulariser and the alignment along training.\n"
        "With --model two-layer|mlp|cnn (or --data digits|toy): any built-in network, Hessians "
        "by Hessian-vector products (Lanczos when D is large), trajectory windows of several "
        "lengths with their growth exponents, a negative control for every verdict. Defaults "
        "per model: " + "; ".join(
            f"{m}: lr {d['lr']:g}, {d['steps']} steps, {d['n_seeds']} seeds, width {d['width']}"
            for m, d in BUILTIN_SETTINGS.items()) + ".",
        formatter_class=_HelpFormatter,
    )
    ana.add_argument("algorithm", choices=("dropout",), help="only 'dropout' for now")
    ana.add_argument("--out", default="out/analysis",
                     help="folder for report.json, the figures and citation.bib")
    ana.add_argument("--model", choices=ARCHITECTURES, default=None,
                     help="a built-in network (see above; default: the embedded problem)")
    ana.add_argument("--data", default=None,
                     help="digits or toy (built-in data, for --model), or an .npz file with "
                     "arrays X (n, d) and y (n,) for the embedded two-layer analysis "
                     "(default: the embedded 1-D task)")
    ana.add_argument("--keep-prob", type=float, default=None,
                     help="keep probability p in (0, 1] (default: 0.9)")
    ana.add_argument("--width", type=_positive_int, default=None,
                     help="hidden neurons m, or CNN channels (default: 16; CNN 4)")
    ana.add_argument("--n-samples", type=_positive_int, default=None,
                     help="digits used, the first n (default: 64)")
    ana.add_argument("--windows", type=_window_list, default=None,
                     help="trajectory window lengths in steps, with --model (default: 100,1000)")
    ana.add_argument("--lr", type=_positive_float, default=None,
                     help="learning rate (default: 0.2; see above with --model)")
    ana.add_argument("--steps", type=_positive_int, default=None,
                     help="training steps (default: 20000; see above with --model)")
    ana.add_argument("--seeds", type=_positive_int, default=None,
                     help="independent initialisations (default: 8; see above with --model)")
    ana.add_argument("--seed", type=int, default=0, help="random seed")
    ana.add_argument("--quiet", action="store_true", help="no progress bars")
    commands["analyze"] = ana
    parser.set_defaults(commands=commands)
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


def _cmd_list() -> int:
    print("solvers (smetool.solve(..., method=NAME)):")
    for name, cls in SOLVERS.items():
        d = cls().describe()
        strong = "-" if d["strong_order"] is None else f"{d['strong_order']:g}"
        print(f"  {name:<10} weak order {d['weak_order']:g}, strong order {strong:<4} "
              f"noise: {', '.join(d['noise_kinds'])}")
    print("\nplug-ins (smetool verify NAME):")
    table = plugins()
    broken = plugin_errors()
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
    out = _output_dir(args.out)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False).")
    if args.order not in spec.orders:
        raise CLIError(f"--order must be one of {', '.join(str(o) for o in spec.orders)} for "
                       f"{spec.name}; got {args.order}.")
    dtype = getattr(torch, args.dtype)
    algorithm = spec.build(dtype=dtype, device=args.device, **options)
    defaults = spec.run_defaults(args.order)
    steps_per_lr = args.steps_per_lr or defaults["steps_per_lr"]
    if steps_per_lr % 2:
        raise CLIError(f"--steps-per-lr must be even; got {steps_per_lr}.")
    cluster: Any = contextlib.nullcontext()
    if args.workers is not None or args.scheduler is not None:
        cluster = dask_executor(workers=args.workers, scheduler=args.scheduler)
    with cluster as executor:
        result = verify(
            algorithm, args.lrs or list(defaults["lrs"]), args.paths or defaults["n_paths"],
            horizon=args.horizon or defaults["horizon"], order=args.order,
            steps_per_lr=steps_per_lr, method=args.method or defaults["method"], seed=args.seed,
            chunk_size=args.chunk_size, dtype=dtype, device=args.device, progress=not args.quiet,
            compile={"auto": None, "on": True, "off": False}[args.compile],
            checkpoint=args.checkpoint_dir, variance_reduction=args.variance_reduction,
            controls=not args.no_controls, hard_controls=not args.no_hard_controls,
            false_failure=args.false_failure, noise_modes=args.noise_modes,
            extrapolate=False if args.no_extrapolation else None, executor=executor,
            settings={"problem": spec.describe(algorithm), "plugin": spec.name, "options": options},
        )
    print(result.table())
    _write_outputs(result, out, args.json, args.plot)
    return 0


def _write_outputs(result: VerifyResult, out: Path | None, json_path: str | None,
                   plot_path: str | None) -> None:
    written: list[Path] = []
    if out is not None:
        result.to_json(str(out / "result.json"))
        result.plot(str(out / "errors.png"))
        _write_csv(result, out / "errors.csv")
        (out / "citation.bib").write_text(result.citation() + "\n")
        written += [out / "result.json", out / "errors.png", out / "errors.csv", out / "citation.bib"]
    if json_path is not None:
        result.to_json(json_path)
        written.append(Path(json_path))
    if plot_path is not None:
        result.plot(plot_path)
        written.append(Path(plot_path))
    for path in written:
        print(f"wrote {path}")


def _write_csv(result: VerifyResult, path: Path) -> None:
    rows = [r.to_dict() for r in result.rows]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cmd_analyze(args: argparse.Namespace) -> int:
    if args.model is not None or args.data in ("digits", "toy"):
        return _cmd_analyze_network(args)
    if args.n_samples is not None or args.windows is not None:
        raise CLIError("--n-samples and --windows need --model (the built-in networks).")
    out = _output_dir(args.out)
    assert out is not None  # --out has a default
    options = {"lr": args.lr, "steps": args.steps, "n_seeds": args.seeds,
               "keep_prob": args.keep_prob, "width": args.width}
    report = analyze_dropout(
        args.data, out_dir=out, seed=args.seed, progress=not args.quiet,
        **{k: v for k, v in options.items() if v is not None},
    )
    print(report.summary())
    (out / "citation.bib").write_text(format_citation(ANALYSIS_REFERENCES) + "\n")
    print(f"wrote {out / 'report.json'}, {out / 'citation.bib'} and the figures in {out}")
    return 0


def _cmd_analyze_network(args: argparse.Namespace) -> int:
    model = args.model or ("mlp" if args.data == "digits" else "two-layer")
    data = args.data or ("toy" if model == "two-layer" else "digits")
    if data not in ("digits", "toy"):
        raise CLIError(f"--data must be digits or toy with --model; got {data!r} (an .npz file "
                       "goes without --model).")
    if model == "two-layer" and data != "toy":
        raise CLIError("--model two-layer is the embedded 1-D task: --data toy (or leave it out).")
    if args.seed < 0:
        raise CLIError(f"--seed must be a non-negative integer; got {args.seed}.")
    d = BUILTIN_SETTINGS[model]
    out = _output_dir(args.out)
    assert out is not None
    built = {"model": model, "data": data, "n_seeds": args.seeds or d["n_seeds"],
             "seed": args.seed, "width": args.width or d["width"],
             "keep_prob": 0.9 if args.keep_prob is None else args.keep_prob,
             "n_samples": args.n_samples or d["n_samples"]}
    subject, inits = builtin_subject(**built)
    report = analyze_network(
        subject, inits, lr=float(args.lr or d["lr"]), steps=int(args.steps or d["steps"]),
        windows=args.windows or (100, 1000), seed=args.seed, progress=not args.quiet,
        out_dir=out, config={"built": built})
    print(report.summary())
    (out / "citation.bib").write_text(format_citation(NETWORK_REFERENCES) + "\n")
    print(f"wrote {out / 'report.json'}, {out / 'citation.bib'} and the figures in {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smetool`` command; returns the exit status (0 on success)."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    commands = args.commands
    key = args.command if args.command != "verify" or not args.algorithm else f"verify {args.algorithm}"
    if extra:  # name the command whose options these are not
        commands.get(key, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "verify" and not args.algorithm:
        commands["verify"].error("name a plug-in: smetool verify ALGORITHM")
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "convergence":
            return run_convergence(args)
        return _cmd_analyze(args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
