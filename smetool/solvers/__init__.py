"""One-step schemes. Each declares its strong and weak order and the noise kinds it supports."""

from .base import Solver, UnsupportedError
from .euler_maruyama import EulerMaruyama
from .milstein import Milstein
from .platen import PlatenWeak2

SOLVERS: dict[str, type[Solver]] = {
    cls.name: cls for cls in (EulerMaruyama, Milstein, PlatenWeak2)
}


def get_solver(name: str) -> Solver:
    """A solver from its command-line name (``euler``, ``milstein``, ``platen``)."""
    try:
        return SOLVERS[name]()
    except KeyError:
        raise ValueError(
            f"`method` must be one of {', '.join(SOLVERS)}; got {name!r}."
        ) from None


__all__ = ["Solver", "UnsupportedError", "EulerMaruyama", "Milstein", "PlatenWeak2", "SOLVERS",
           "get_solver"]
