"""``smetool analyze NAME`` and ``smetool compare NAME …``: the analyses' commands, generated from
the plug-in declarations (:class:`~smetool.algorithms.spec.AnalysisSpec`). No numerics here: it
parses, builds the plug-ins and the landscape, calls :mod:`smetool.analysis` and writes files.

Every plug-in whose declaration has an ``analysis`` gets ``smetool analyze NAME`` with its own
options; with ``--model`` (plug-ins whose rule runs on other landscapes) it is trained on a
built-in network (:func:`~smetool.models.networks.builtin_network`) instead of its own problem.
An option the plug-in declares itself (``--width``, ``--keep-prob``, ``--model`` …) also sets the
network's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .algorithms.spec import Option, PluginSpec
from .algorithms.training import landscape_of
from .analysis import REFERENCE, Settings, StudyReport, analyze, compare, initial_points
from .bibliography import format_citation
from .cli_inputs import plugin_option_type, positive_float, positive_int, window_list
from .models.networks import DATASETS, NETWORK_SETTINGS, NETWORKS, builtin_network

__all__ = ["add_analysis_commands", "run_analysis", "OWN_SEEDS", "NETWORK_OPTIONS",
           "COMPARE_TARGET_FRACTION"]

OWN_SEEDS = 8
"""Initialisations of ``smetool analyze NAME`` on the plug-in's own problem."""

COMPARE_TARGET_FRACTION = 0.025
"""``smetool compare``'s default target: this fraction of the median initial training loss."""


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}; got {text!r}")
        return text
    return parse


def _data(text: str) -> str:
    if text not in DATASETS and not text.endswith(".npz"):
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(DATASETS)} or an .npz file; "
                                         f"got {text!r}")
    return text


NETWORK_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "model": (_choice(NETWORKS), "a built-in network to train on instead of the plug-in's own "
              "problem: " + ", ".join(NETWORKS)),
    "data": (_data, "the network's data: digits (scikit-learn's bundled), toy (the 1-D task) or "
             "an .npz file with arrays X (n, d) and y (n,) (default: the network's)"),
    "width": (positive_int, "hidden units (MLP, two-layer) or channels (CNN) (default: the "
              "network's)"),
    "keep_prob": (positive_float, "keep probability p of the network's dropout layers "
                  "(default: 0.9)"),
    "n_samples": (positive_int, "training digits, the first n (default: the network's)"),
    "batch_size": (positive_int, "minibatch size of SGD, SAM and SignSGD on the network "
                   "(default: 8)"),
}
"""The built-in network's options (``builtin_network``'s keywords)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _plugin_option(parser: argparse.ArgumentParser, option: Option) -> None:
    text = f"{option.help} (default: {option.default})".replace("%", "%%")
    parser.add_argument(option.flag, dest=f"plugin_{option.name}", type=plugin_option_type(option),
                        default=None, metavar=option.name.upper(), help=text)


def _network_options(parser: argparse.ArgumentParser, skip: set[str]) -> None:
    for name, (kind, text) in NETWORK_OPTIONS.items():
        if name not in skip:
            parser.add_argument(_flag(name), dest=f"net_{name}", type=kind, default=None,
                                metavar=name.upper(), help=text)


def _common(parser: argparse.ArgumentParser, out: str) -> None:
    add = parser.add_argument
    add("--seeds", type=positive_int, default=None, help="initialisations, one path each")
    add("--seed", type=int, default=0, help="random seed (SeedSequence of every draw)")
    add("--n-noise", type=positive_int, default=256,
        help="draws of each algorithm's step at its end points (random gradient data)")
    add("--n-eigen", type=positive_int, default=20,
        help="top Hessian eigendirections of the variance principle")
    add("--out", default=out, help="folder for report.json, the figures and citation.bib")
    add("--quiet", action="store_true", help="no progress bar")


def add_analysis_commands(sub: Any, table: dict[str, PluginSpec], parser_class: type,
                          formatter: type) -> dict[str, argparse.ArgumentParser]:
    """Register ``analyze`` (one sub-command per plug-in with an analysis) and ``compare``;
    return the parsers by command (for one-line errors)."""
    analysable = {name: spec for name, spec in sorted(table.items()) if spec.analysis is not None}
    networks = "; ".join(f"{m}: lr {s.lr:g}, {s.steps} steps, {s.n_seeds} seeds, width {s.width}"
                         for m, s in NETWORK_SETTINGS.items())
    ana = sub.add_parser(
        "analyze", formatter_class=formatter,
        help="the papers' analyses of one algorithm against gradient descent",
        description="Train the algorithm and gradient descent from the same initialisations, then "
        "measure sharpness, the variance-flatness relations on gradient and trajectory data, the "
        "variance principle, Hessian-noise alignment, condensation and the implicit regularizer "
        "its SME predicts, each finding with a verdict (holds / fails / inconclusive) and a "
        "negative control; writes report.json (strict JSON), the figures and citation.bib.\n\n"
        "Without --model: the plug-in's own problem. With --model: a built-in network "
        f"({networks}).")
    commands: dict[str, argparse.ArgumentParser] = {"analyze": ana}
    ana_sub = ana.add_subparsers(dest="algorithm", metavar="ALGORITHM", parser_class=parser_class,
                                 help=f"plug-in name: {', '.join(analysable)}")
    for name, spec in analysable.items():
        assert spec.analysis is not None
        p = ana_sub.add_parser(name, help=spec.description, formatter_class=formatter,
                               description=f"{spec.description}\n\nOwn problem: lr "
                               f"{spec.analysis.lr:g}, {spec.analysis.steps} steps, {OWN_SEEDS} "
                               "seeds." + (" Runs on the built-in networks (--model)."
                                           if spec.analysis.on_networks else ""))
        own = {o.name for o in spec.options}
        for option in spec.options:
            _plugin_option(p, option)
        if spec.analysis.on_networks:
            _network_options(p, own)
        p.add_argument("--lr", type=positive_float, default=None,
                       help="learning rate of the algorithm (default: its declaration's)")
        p.add_argument("--reference-lr", type=positive_float, default=None,
                       help="learning rate of gradient descent (default: the algorithm's; on a "
                       "network the network's)")
        p.add_argument("--steps", type=positive_int, default=None, help="training steps")
        p.add_argument("--windows", type=window_list, default=(100, 1000),
                       help="trajectory window lengths in steps, after training (default: "
                       "100,1000)")
        _common(p, "out/analysis")
        commands[f"analyze {name}"] = p
    cmp = sub.add_parser(
        "compare", formatter_class=formatter,
        help="several algorithms trained to the same loss on a network, side by side",
        description="Train each algorithm and gradient descent from the same initialisations on "
        "a built-in network until its training loss reaches the same target, then compare, with "
        "98 % intervals over the seeds: sharpness (top Hessian eigenvalue, trace), the variance "
        "principle (slope of log noise variance on log curvature over the Hessian's "
        "eigendirections), Hessian-noise alignment, the implicit regularizer each SME predicts "
        "and test accuracy on held-out digits, every claim with a verdict and a negative "
        "control. Plug-ins at their declared network defaults.")
    movable = [n for n, s in analysable.items() if s.analysis is not None and s.analysis.on_networks]
    cmp.add_argument("algorithms", nargs="+", metavar="ALGORITHM",
                     help=f"plug-ins: {', '.join(movable)}")
    _network_options(cmp, set())
    cmp.set_defaults(net_model="mlp")
    cmp.add_argument("--test", type=int, default=500, help="held-out digits for test accuracy")
    cmp.add_argument("--target", type=positive_float, default=None,
                     help=f"training loss every run trains to (default: {COMPARE_TARGET_FRACTION:g}"
                     " × the median initial loss)")
    cmp.add_argument("--max-steps", type=positive_int, default=20_000,
                     help="the most steps a run may take to reach the target")
    cmp.add_argument("--check-every", type=positive_int, default=10,
                     help="steps between checks of the training loss")
    _common(cmp, "out/compare")
    commands["compare"] = cmp
    return commands


def _options(spec: PluginSpec, args: argparse.Namespace) -> dict[str, Any]:
    return {o.name: getattr(args, f"plugin_{o.name}") for o in spec.options
            if getattr(args, f"plugin_{o.name}", None) is not None}


def _network(args: argparse.Namespace, options: dict[str, Any], *, test: int = 0):
    """The built-in network of the command line; a plug-in's own option of the same name sets
    it too."""
    kw: dict[str, Any] = {name: options.get(name, getattr(args, f"net_{name}", None))
                          for name in NETWORK_OPTIONS}
    model: str = kw.pop("model")
    kw = {k: v for k, v in kw.items() if v is not None}
    return model, builtin_network(model, test=test, **kw)


def _settings(args: argparse.Namespace, windows: tuple[int, ...] = ()) -> Settings:
    return Settings(n_noise=args.n_noise, n_eigen=args.n_eigen, windows=windows, seed=args.seed)


def _finish(report: StudyReport, out: Path) -> int:
    print(report.summary())
    (out / "citation.bib").write_text(format_citation(report.references) + "\n")
    print(f"wrote {', '.join(report.files)} and {out / 'citation.bib'}")
    return 0


def _analyze(spec: PluginSpec, args: argparse.Namespace, out: Path) -> int:
    assert spec.analysis is not None
    options = _options(spec, args)
    model = getattr(args, "net_model", None)
    given = [_flag(n) for n in NETWORK_OPTIONS if getattr(args, f"net_{n}", None) is not None]
    if model is None and given:
        raise ValueError(f"{', '.join(given)} set the network of --model; name one "
                         f"({', '.join(NETWORKS)}).")
    if model is None:
        algorithm = spec.build_for_analysis(**options)
        landscape = landscape_of(algorithm)
        inits = initial_points(landscape, args.seeds or OWN_SEEDS, args.seed)
        lr, ref_lr, steps = spec.analysis.lr, None, spec.analysis.steps
        built: dict[str, Any] = {"problem": "own"}
        used = {**spec.defaults(), **options}
    else:
        model, (landscape, _) = _network(args, options)
        setting = NETWORK_SETTINGS[model]
        inits = initial_points(landscape, args.seeds or setting.n_seeds, args.seed)
        algorithm = spec.build_on(landscape, inits[0], **options)
        lr = spec.analysis.network_lr or setting.lr
        ref_lr, steps = setting.lr, setting.steps
        built = {"problem": "network", "model": model}
        used = {**spec.defaults(), **spec.analysis.network_options, **options}
    report = analyze(algorithm, inits, lr=args.lr or lr, steps=args.steps or steps,
                     windows=args.windows, reference_lr=args.reference_lr or ref_lr,
                     settings=_settings(args), label=spec.name, progress=not args.quiet,
                     out_dir=out, config={"plugin": spec.name, "built": built, "options": used})
    return _finish(report, out)


def _compare(table: dict[str, PluginSpec], args: argparse.Namespace, out: Path) -> int:
    names = list(dict.fromkeys(args.algorithms))
    if REFERENCE in names:
        raise ValueError(f"`{REFERENCE}` (gradient descent) is the reference of every "
                         "comparison; name the other algorithms.")
    model, (landscape, test) = _network(args, {}, test=args.test)
    setting = NETWORK_SETTINGS[model]
    inits = initial_points(landscape, args.seeds or setting.n_seeds, args.seed)
    runs, used = [], {}
    for name in names:
        if name not in table:
            raise ValueError(f"unknown plug-in {name!r}; the plug-ins are "
                             f"{', '.join(sorted(table))}.")
        spec = table[name]
        if spec.analysis is None or not spec.analysis.on_networks:
            raise ValueError(f"plug-in {name!r} runs on its own problem only; it cannot be "
                             "compared on a network.")
        runs.append((name, spec.build_on(landscape, inits[0]),
                     spec.analysis.network_lr or setting.lr))
        used[name] = dict(spec.analysis.network_options)  # the others at their defaults
    target = args.target or COMPARE_TARGET_FRACTION * float(landscape.loss(inits).median())
    report = compare(runs, inits, target=target, max_steps=args.max_steps,
                     reference_lr=setting.lr, test=test, check_every=args.check_every,
                     settings=_settings(args), progress=not args.quiet, out_dir=out,
                     config={"model": model, "test_points": args.test, "network_options": used,
                             "batch_size": getattr(landscape, "batch_size", None)})
    return _finish(report, out)


def run_analysis(args: argparse.Namespace, table: dict[str, PluginSpec],
                 output_dir: Callable[[str | None], Path | None]) -> int:
    """Run ``smetool analyze NAME`` or ``smetool compare`` (parsed ``args``)."""
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {args.seed}.")
    out = output_dir(args.out)
    assert out is not None  # --out has a default
    if args.command == "compare":
        return _compare(table, args, out)
    return _analyze(table[args.algorithm], args, out)
