"""``smetool convergence PROBLEM --method NAME``: a scheme's order on an SDE from the command line.

PROBLEM is a problem of the library (``smetool convergence --help`` lists them; ``--set NAME=VALUE``
sets its parameters) or ``module:object`` — a :class:`~smetool.exact.LibraryProblem`, an SDE (with
``--x0``), or a function returning either (called with the ``--set`` parameters). ``--method`` may
be repeated (each method is judged; ``--work-precision PNG`` draws error against seconds) and may
name a user's scheme as ``module:object`` (a :class:`~smetool.Solver` instance or class). No
numerics here: it parses, checks everything before the first path, and calls the library.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
from collections.abc import Callable
from typing import Any

import torch

from .checks import import_object
from .cli_inputs import positive_int
from .exact import PROBLEMS, LibraryProblem, library_problem, problem_parameters
from .sde import SDE
from .solvers import SOLVERS, Solver
from .verification import REFERENCES, convergence, work_precision

__all__ = ["add_parser", "run", "parse_steps"]


def parse_steps(text: str) -> list[float]:
    """Steps from ``"0.1,0.05"``, ``"2^-3,2^-4"`` or the range of powers ``"2^-3..2^-6"``."""
    out: list[float] = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        if ".." in item:
            first, last = item.split("..")
            a, b = _power_of_two(first), _power_of_two(last)
            step = 1 if b >= a else -1
            out += [2.0**k for k in range(a, b + step, step)]
            continue
        value = 2.0 ** _power_of_two(item) if item.startswith("2^") else _number(item)
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"steps must be positive; got {item!r}")
        out.append(value)
    if len(out) < 3:
        raise argparse.ArgumentTypeError(f"give at least 3 steps (e.g. 2^-2..2^-5); got {text!r}")
    return out


def _power_of_two(text: str) -> int:
    if not text.startswith("2^"):
        raise argparse.ArgumentTypeError(f"a range is of powers of two, 2^-A..2^-B; got {text!r}")
    try:
        return int(text[2:])
    except ValueError:
        raise argparse.ArgumentTypeError(f"2^K needs an integer K; got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None


def _setting(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE; got {text!r}")
    try:
        parsed: Any = float(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, float) and parsed.is_integer() and "." not in value and "e" not in value:
        parsed = int(parsed)
    return name, parsed


def _vector(text: str) -> list[float]:
    return [_number(t) for t in text.replace(",", " ").split()]


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> argparse.ArgumentParser:
    """Add ``smetool convergence`` to the subcommands ``sub``."""
    library = "\n".join(f"  {name}({', '.join(f'{k}={v!r}' for k, v in problem_parameters(name).items())})"
                         for name in PROBLEMS)
    parser = sub.add_parser(
        "convergence", help="a scheme's weak or strong order on an SDE, judged in one call",
        formatter_class=formatter,
        description="Measure a scheme's errors at several steps on a problem with an exact "
        "reference (the exact solution on the scheme's own Brownian path where there is one, "
        "else closed-form expectations,\nelse an extrapolated fine solve on the same path), "
        "print the table and the series test of its declared order\n(pass / fail / "
        "inconclusive), and write the log-log plot and the JSON record.\n\nproblems "
        "(--set NAME=VALUE sets a parameter):\n" + library,
        epilog="examples:\n  smetool convergence gbm --method euler --test x --dts 2^-3..2^-6 "
        "--paths 100000\n  smetool convergence gbm --set mu=0.5 --set sigma=1 --method milstein "
        "--kind strong\n  smetool convergence mypkg.models:my_problem --method mypkg.schemes:MyScheme\n\n"
        "exit status: 0 when no method fails its order, 1 when one fails, 2 on bad input")
    add = parser.add_argument
    add("problem", help="a library problem (above) or MODULE:OBJECT")
    add("--method", action="append", default=None,
        help=f"scheme: {', '.join(SOLVERS)} or MODULE:OBJECT (a Solver); repeat for several "
        "(default: euler)")
    add("--set", action="append", type=_setting, default=[], metavar="NAME=VALUE",
        help="a parameter of the problem (repeatable; default: the problem's defaults)")
    add("--x0", type=_vector, default=None, help="initial state, e.g. '1,0.5' (for an SDE)")
    add("--horizon", type=_number, default=None, help="T (default: the problem's)")
    add("--dts", type=parse_steps, default=None,
        help="steps: '0.1,0.05,0.025', '2^-3,2^-4,2^-5' or '2^-2..2^-5' (default: T/4 … T/32; "
        "strong T/16 … T/256)")
    add("--kind", choices=("weak", "strong"), default="weak", help="weak or strong errors")
    add("--test", action="append", default=None,
        help="test function: an observable of the problem or MODULE:FUNCTION (repeatable; "
        "default: every observable)")
    add("--reference", choices=REFERENCES, default="auto", help="what the errors are against")
    add("--reference-method", default=None,
        help="solver of the extrapolated/fine reference (default: platen for weak errors, "
        "milstein for strong ones, where they apply)")
    add("--reference-dt", type=_number, default=None, help="finest step of that reference")
    add("--order", type=_number, default=None,
        help="claimed order (default: the method's declared order for the noise kind)")
    add("--paths", type=positive_int, default=10_000, help="paths per step")
    add("--false-failure", type=_number, default=0.01,
        help="probability that a right order fails (split over the test functions)")
    add("--seed", type=int, default=0, help="random seed")
    add("--device", choices=("cpu", "cuda"), default="cpu", help="where to simulate")
    add("--dtype", choices=("float32", "float64"), default="float64", help="precision")
    add("--chunk-size", type=positive_int, default=None, help="paths per chunk")
    add("--json", default=None, help="write the JSON record here")
    add("--plot", default=None, help="write the log-log plot (PNG) here (one per method: "
        "NAME is inserted before the suffix when there are several)")
    add("--work-precision", default=None, metavar="PNG",
        help="also time each method and draw error against seconds")
    add("--timing-paths", type=positive_int, default=None,
        help="paths per timed solve (default: --paths)")
    add("--quiet", action="store_true", help="no progress bars")
    return parser


def _method(spec: str) -> Solver | str:
    if spec in SOLVERS:
        return spec
    if ":" not in spec:
        raise ValueError(f"--method must be one of {', '.join(SOLVERS)} or MODULE:OBJECT; got "
                         f"{spec!r}.")
    obj = import_object(spec, "--method")
    if inspect.isclass(obj) and issubclass(obj, Solver):
        obj = obj()
    if not isinstance(obj, Solver):
        raise ValueError(f"--method {spec} must name a smetool.Solver (instance or class); got "
                         f"{type(obj).__name__}.")
    return obj


def _problem(args: argparse.Namespace) -> tuple[LibraryProblem | SDE, Any]:
    params = dict(args.set)
    if ":" not in args.problem:
        if args.problem not in PROBLEMS:
            raise ValueError(f"PROBLEM must be one of {', '.join(PROBLEMS)} or MODULE:OBJECT; "
                             f"got {args.problem!r}.")
        return library_problem(args.problem, **params), args.x0
    obj = import_object(args.problem, "PROBLEM")
    if not isinstance(obj, (LibraryProblem, SDE)) and callable(obj) and not hasattr(obj, "f"):
        try:
            obj = obj(**params)
        except TypeError as exc:
            raise ValueError(f"PROBLEM {args.problem}: calling it with --set {params} failed "
                             f"({exc}).") from None
    elif params:
        raise ValueError(f"--set: PROBLEM {args.problem} is not a function; it takes no "
                         "parameters.")
    if isinstance(obj, LibraryProblem):
        return obj, args.x0
    if args.x0 is None:
        raise ValueError(f"--x0 is needed: PROBLEM {args.problem} is an SDE without an initial "
                         "state (a LibraryProblem brings its own).")
    return obj, args.x0


def _tests(specs: list[str] | None, problem: Any) -> Any:
    if specs is None:
        return None
    if all(":" not in s for s in specs):
        if not isinstance(problem, LibraryProblem):
            raise ValueError("--test NAME needs a library problem; for an SDE give "
                             "--test MODULE:FUNCTION.")
        names = [o.name for o in problem.observables]
        bad = [s for s in specs if s not in names]
        if bad:
            raise ValueError(f"--test must be one of {', '.join(names)} or MODULE:FUNCTION; got "
                             f"{bad[0]!r}.")
        return specs
    out: dict[str, Callable] = {}
    for s in specs:
        if ":" not in s:
            raise ValueError(f"--test: mix no observable names with MODULE:FUNCTION; got {s!r}.")
        g = import_object(s, "--test")
        if not callable(g):
            raise ValueError(f"--test {s} must be a function of the states (P, D) -> (P,).")
        out[s.split(":")[1]] = g
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``smetool convergence`` (errors raise ValueError with the flag in the message)."""
    problem, x0 = _problem(args)
    methods = [_method(m) for m in (args.method or ["euler"])]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available.")
    if not 0 < args.false_failure < 1:
        raise ValueError(f"--false-failure must be in (0, 1); got {args.false_failure:g}.")
    t_span = None
    if args.horizon is not None:
        start = problem.t_span[0] if isinstance(problem, LibraryProblem) else 0.0
        t_span = (start, args.horizon)
    options = dict(test_functions=_tests(args.test, problem), reference=args.reference,
                   paths=args.paths, kind=args.kind, order=args.order, t_span=t_span,
                   reference_method=args.reference_method, reference_dt=args.reference_dt,
                   false_failure=args.false_failure, seed=args.seed,
                   dtype=getattr(torch, args.dtype), device=args.device,
                   chunk_size=args.chunk_size, progress=not args.quiet)
    if args.work_precision is not None:
        wp = work_precision(problem, x0, methods, args.dts, timing_paths=args.timing_paths,
                            **options)
        results = list(wp.results.values())
    else:
        results = [convergence(problem, x0, m, args.dts, **options) for m in methods]
    for result in results:
        print(result.table())
        print()
    written = []
    for result in results:
        if args.plot is not None:
            path = args.plot if len(results) == 1 else _insert(args.plot, result.method)
            result.plot(path)
            written.append(path)
    if args.json is not None:
        if args.work_precision is not None:
            wp.to_json(args.json)
        elif len(results) == 1:
            results[0].to_json(args.json)
        else:
            with open(args.json, "w") as fh:
                json.dump({r.method: r.to_dict() for r in results}, fh, indent=2, allow_nan=False)
        written.append(args.json)
    if args.work_precision is not None:
        print(wp.table())
        wp.plot(args.work_precision)
        written.append(args.work_precision)
    for path in written:
        print(f"wrote {path}")
    return 0 if all(r.verdict.value != "fail" for r in results) else 1


def _insert(path: str, name: str) -> str:
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-{name}.{suffix}" if dot else f"{path}-{name}"
