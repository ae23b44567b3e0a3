"""The ``smetool`` command line. No numerics here: it parses, calls the library and writes files."""

from __future__ import annotations

import argparse
import csv
import sys
import traceback
from pathlib import Path
from typing import Sequence

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


def _build_parser() -> argparse.ArgumentParser:
    from .algorithms.registry import PLUGINS

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
        "confidence interval. Defaults depend on the plug-in; the table at the end lists them.",
        epilog=_plugin_defaults_table(PLUGINS),
        formatter_class=_HelpFormatter,
    )
    ver.add_argument("algorithm", choices=sorted(PLUGINS), metavar="ALGORITHM",
                     help=f"plug-in name: {', '.join(sorted(PLUGINS))}")
    ver.add_argument("--lrs", type=_lr_list, default=None,
                     help="learning rates, e.g. '0.04,0.02,0.01' (default: the plug-in's, below)")
    ver.add_argument("--horizon", type=_positive_float, default=None,
                     help="horizon T in SDE time; T/lr steps of the algorithm (default: the plug-in's)")
    ver.add_argument("--paths", type=_positive_int, default=None,
                     help="paths per side and learning rate (default: the plug-in's)")
    ver.add_argument("--order", type=int, choices=(1, 2), default=1, help="SME order to test")
    ver.add_argument("--steps-per-lr", type=_positive_int, default=None,
                     help="SME steps per learning rate (even); the SME step is lr/steps "
                     "(default: the plug-in's)")
    ver.add_argument("--method", default=None,
                     help="SME solver (see `smetool list`; default: the plug-in's)")
    ver.add_argument("--seed", type=int, default=0, help="random seed")
    ver.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to simulate")
    ver.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                     help="simulation precision (statistics are always float64)")
    ver.add_argument("--chunk-size", type=_positive_int, default=None,
                     help="paths per chunk, to bound memory (default: all paths, at most 20000)")
    for option in sorted({o for spec in PLUGINS.values() for o in spec.options}):
        flag, kwargs = PLUGIN_OPTIONS[option]
        ver.add_argument(flag, dest=option, default=None,
                         **{**kwargs, "help": kwargs["help"] + " (default: the plug-in's, below)"})
    ver.add_argument("--out", default=None,
                     help="folder for result.json, errors.csv, errors.png and citation.bib "
                     "(default: print only)")
    ver.add_argument("--json", default=None, help="also write the JSON result to this path")
    ver.add_argument("--plot", default=None, help="also write the log-log plot (PNG) to this path")
    ver.add_argument("--checkpoint-dir", default=None,
                     help="folder for per-learning-rate checkpoints; rerun the same command to "
                     "resume a killed run")
    ver.add_argument("--quiet", action="store_true", help="no progress bars")

    lst = sub.add_parser("list", help="list solvers and plug-ins with their orders",
                   description="List the SDE solvers (weak and strong order, noise kinds) and the "
                   "plug-ins (SME orders, problem, paper).")

    ana = sub.add_parser(
        "analyze",
        help="the dropout papers' analyses (flatness, variance-flatness, alignment, condensation)",
        description="Train dropout GD from several initialisations, then measure the implicit "
        "regulariser, flatness, the variance-flatness relations, Hessian-variance alignment and "
        "condensation; writes report.json and the figures.",
        formatter_class=_HelpFormatter,
    )
    ana.add_argument("algorithm", choices=("dropout",), help="only 'dropout' for now")
    ana.add_argument("--out", default="out/analysis",
                     help="folder for report.json, the figures and citation.bib")
    ana.add_argument("--data", default=None,
                     help=".npz file with arrays X (n, d) and y (n,) "
                     "(default: the embedded 1-D task)")
    ana.add_argument("--keep-prob", type=float, default=None,
                     help="keep probability p in (0, 1] (default: 0.9)")
    ana.add_argument("--width", type=_positive_int, default=None,
                     help="hidden neurons m (default: 16)")
    ana.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: 0.2)")
    ana.add_argument("--steps", type=_positive_int, default=None,
                     help="training steps (default: 20000)")
    ana.add_argument("--seeds", type=_positive_int, default=None,
                     help="independent initialisations (default: 8)")
    ana.add_argument("--seed", type=int, default=0, help="random seed")
    ana.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.commands = {"verify": ver, "list": lst, "analyze": ana}
    return parser


# flag and argparse keywords of the plug-in specific options of `smetool verify`
PLUGIN_OPTIONS = {
    "keep_prob": ("--keep-prob", {"type": float, "help": "dropout keep probability p in (0, 1] "
                                  "(p = 0.9 drops 10%% of the neurons)"}),
    "width": ("--width", {"type": _positive_int, "help": "hidden neurons m"}),
    "batch_size": ("--batch-size", {"type": _positive_int, "help": "SGD minibatch size"}),
    "base_lr": ("--base-lr", {"type": _positive_float, "help": "SVAG: the learning rate whose "
                              "SME is the target (each step lr uses amplification base_lr/lr)"}),
}


def _plugin_defaults_table(plugins) -> str:
    """The defaults of every plug-in, for the end of ``smetool verify --help``."""
    lines = ["plug-in defaults (--lrs / --horizon / --paths / --steps-per-lr / --method, and the "
             "plug-in's own options):"]
    width = max(len(name) for name in plugins)
    for name, spec in sorted(plugins.items()):
        lrs = ",".join(f"{lr:g}" for lr in spec.lrs)
        own = " ".join(f"{PLUGIN_OPTIONS[o][0]} {spec.option_defaults[o]:g}" for o in spec.options)
        lines.append(f"  {name:<{width}}  {lrs}  T={spec.horizon:g}  {spec.n_paths} paths  "
                     f"steps {spec.steps_per_lr}  {spec.method}  {own}".rstrip())
    lines.append("\nexample: smetool verify dropout --keep-prob 0.8 --out out/p08")
    return "\n".join(lines)


def _cmd_list() -> int:
    from .algorithms.registry import PLUGINS
    from .solvers import SOLVERS

    print("solvers (smetool.solve(..., method=NAME)):")
    for name, cls in SOLVERS.items():
        d = cls().describe()
        strong = "-" if d["strong_order"] is None else f"{d['strong_order']:g}"
        print(f"  {name:<10} weak order {d['weak_order']:g}, strong order {strong:<4} "
              f"noise: {', '.join(d['noise_kinds'])}")
    print("\nplug-ins (smetool verify NAME):")
    width = max(len(name) for name in PLUGINS)
    for name, spec in sorted(PLUGINS.items()):
        orders = ", ".join(str(o) for o in spec.orders)
        print(f"  {name:<{width}} SME orders {orders:<6} {spec.description}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import torch

    from .algorithms.registry import PLUGINS
    from .verification import verify

    spec = PLUGINS[args.algorithm]
    options = {o: spec.option_defaults[o] if getattr(args, o, None) is None else getattr(args, o)
               for o in spec.options}
    out = _output_dir(args.out)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False).")
    dtype = getattr(torch, args.dtype)
    algorithm = spec.factory(dtype=dtype, device=args.device, **options)
    lrs = args.lrs or list(spec.lrs)
    horizon = args.horizon or spec.horizon
    paths = args.paths or spec.n_paths
    steps_per_lr = args.steps_per_lr or spec.steps_per_lr
    if steps_per_lr % 2:
        raise CLIError(f"--steps-per-lr must be even; got {steps_per_lr}.")
    result = verify(
        algorithm, lrs, horizon=horizon, n_paths=paths, order=args.order,
        steps_per_lr=steps_per_lr, method=args.method or spec.method, seed=args.seed,
        chunk_size=args.chunk_size, dtype=dtype, device=args.device,
        progress=not args.quiet, checkpoint_dir=args.checkpoint_dir,
        settings={"problem": spec.describe(algorithm)},
    )
    print(result.table())
    targets = []
    if out is not None:
        targets = [out / "result.json", out / "errors.png"]
        _write_csv(result, out / "errors.csv")
        (out / "citation.bib").write_text(result.citation() + "\n")
    json_paths = [p for p in (args.json, targets[0] if targets else None) if p is not None]
    for path in json_paths:
        result.to_json(str(path))
    plot_paths = [p for p in (args.plot, targets[1] if targets else None) if p is not None]
    for path in plot_paths:
        result.plot(str(path))
    written = json_paths + plot_paths + ([out / "errors.csv", out / "citation.bib"] if out else [])
    for path in written:
        print(f"wrote {path}")
    return 0


def _write_csv(result, path: Path) -> None:
    rows = [r.to_dict() for r in result.rows]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis.report import analyze_dropout

    out = _output_dir(args.out)
    options = {"lr": args.lr, "steps": args.steps, "n_seeds": args.seeds,
               "keep_prob": args.keep_prob, "width": args.width}
    report = analyze_dropout(
        args.data, out_dir=out, seed=args.seed, progress=not args.quiet,
        **{k: v for k, v in options.items() if v is not None},
    )
    print(report.summary())
    from .citation import citation

    (out / "citation.bib").write_text(citation(plugin="analysis") + "\n")
    print(f"wrote {out / 'report.json'}, {out / 'citation.bib'} and the figures in {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smetool`` command; returns the exit status (0 on success)."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the command whose options these are not
        parser.commands.get(args.command, parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "verify":
            return _cmd_verify(args)
        return _cmd_analyze(args)
    except KeyboardInterrupt:
        print("smetool: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, FloatingPointError, OSError, RuntimeError) as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"smetool {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
