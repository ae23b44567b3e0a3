"""Check smetool's layering: imports only go down, no circles, no private names across modules.

    python scripts/layers.py            # prints the layers and every violation; exit 1 if any

The layers, bottom first (a module may import its own layer and those below):

====  ==============  ===============================================================
  0   foundation      checks, version, jsonutil, bibliography, device, kernels
  1   primitives      sde, noise, brownian, solvers, integrate, perturbed
  2   statistics      stats
  3   Monte Carlo     montecarlo
  4   models          models
  5   exact           exact
  6   algorithms      algorithms (plug-ins)
  7   verification    verification, plotting, citation
  8   analysis        analysis
  9   interface       cli, cli_analysis, cli_convergence, cli_inputs, the package root, __main__
====  ==============  ===============================================================

An import of smetool code inside a function is reported too (it hides an arrow from readers);
the one allowed lazy import is matplotlib's, which is optional.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "smetool"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("checks", "version", "jsonutil", "bibliography", "device", "kernels")),
    ("primitives", ("sde", "noise", "brownian", "solvers", "integrate", "perturbed")),
    ("statistics", ("stats",)),
    ("Monte Carlo", ("montecarlo",)),
    ("models", ("models",)),
    ("exact", ("exact",)),
    ("algorithms", ("algorithms",)),
    ("verification", ("verification", "plotting", "citation")),
    ("analysis", ("analysis",)),
    ("interface", ("cli", "cli_analysis", "cli_convergence", "cli_inputs", "__init__", "__main__")),
)


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    lazy: bool
    names: tuple[str, ...]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer index of a module ``smetool.x.y`` (by its first component after the package)."""
    parts = module.split(".")
    top = "__init__" if len(parts) == 1 else parts[1]
    for i, (_, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise KeyError(f"module {module} belongs to no layer; add it to scripts/layers.py")


def imports(path: Path) -> list[Import]:
    """The smetool imports of one file, with whether they sit inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] == PACKAGE:
                    names = tuple(a.name for a in child.names)
                    found.append(Import(me, target, child.lineno, lazy, names))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append(Import(me, alias.name, child.lineno, lazy, ()))
            visit(child, inner)

    visit(tree, False)
    return found


def check() -> list[str]:
    """Every violation, one line each."""
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(f) for f in files}
    for path in files:
        for imp in imports(path):
            target = imp.imported
            # `from smetool.x import y` may name a submodule y: resolve to the deepest module.
            for name in imp.names:
                if f"{target}.{name}" in modules:
                    graph.setdefault(imp.importer, set()).add(f"{target}.{name}")
            graph.setdefault(imp.importer, set()).add(target)
            where = f"{path.relative_to(ROOT)}:{imp.line}"
            if layer_of(target) > layer_of(imp.importer):
                problems.append(
                    f"{where}: {imp.importer} ({LAYERS[layer_of(imp.importer)][0]}) imports "
                    f"{target} ({LAYERS[layer_of(target)][0]}), a higher layer")
            if imp.lazy:
                problems.append(f"{where}: {imp.importer} imports {target} inside a function")
            private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
            if private and target != imp.importer:
                problems.append(f"{where}: {imp.importer} imports private {', '.join(private)} "
                                f"from {target}")
    problems += [f"import circle: {' -> '.join(c)}" for c in _circles(graph)]
    return problems


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Module-level cycles (a package importing its own submodules through __init__ excluded)."""
    out: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def edges(node: str) -> set[str]:
        # An __init__ re-exporting its submodules is not a cycle with them.
        return {t for t in graph.get(node, ()) if not t.startswith(node + ".")}

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges(node)):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not any(node.startswith(c + ".") or c.startswith(node + ".")
                           for c in cycle[:-1] if c != node):
                    out.append(cycle)
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return out


def main() -> int:
    for i, (name, members) in enumerate(LAYERS):
        print(f"{i}  {name:<13} {', '.join(members)}")
    problems = check()
    print("\n".join(problems) if problems else "\nno upward import, no lazy import, no circle, "
          "no private name across modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
