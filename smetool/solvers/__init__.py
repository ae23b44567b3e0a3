"""One-step schemes. Each declares its strong and weak order and the noise kinds it supports."""

from .base import Solver, UnsupportedError
from .euler_maruyama import EulerMaruyama
from .milstein import Milstein
from .platen import PlatenWeak2
from .small_noise import SmallNoiseHeun

SOLVERS: dict[str, type[Solver]] = {
    cls.name: cls for cls in (EulerMaruyama, Milstein, PlatenWeak2, SmallNoiseHeun)
}


def get_solver(name: str) -> Solver:
    """A solver from its command-line name (``euler``, ``milstein``, ``platen``, ``heun``)."""
    try:
        return SOLVERS[name]()
    except KeyError:
        raise ValueError(
            f"`method` must be one of {', '.join(SOLVERS)}; got {name!r}."
        ) from None


__all__ = ["Solver", "UnsupportedError", "EulerMaruyama", "Milstein", "PlatenWeak2", "SmallNoiseHeun",
           "SOLVERS",
           "get_solver"]
