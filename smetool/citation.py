"""``citation()``: BibTeX for smetool and for the papers behind the solver and plug-in you ran.

The entries come from the ``references`` that solver and plug-in classes declare
(:class:`~smetool.bibliography.Reference`), so a user's own solver or plug-in is cited like a
built-in one.
"""

from __future__ import annotations

from collections.abc import Iterable

from .algorithms.registry import get_plugin, plugins
from .bibliography import Reference, format_citation
from .solvers import SOLVERS

__all__ = ["citation"]


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def citation(solver: str | Iterable[str] | None = None,
             plugin: str | Iterable[str] | None = None,
             *, references: Iterable[Reference] = ()) -> str:
    """BibTeX entries for smetool and for the papers behind what you used.

    Parameters
    ----------
    solver : str or iterable of str, optional
        Solver names as in ``smetool list`` (``"euler"``, ``"milstein"``, ``"platen"``,
        ``"heun"``).
    plugin : str or iterable of str, optional
        Plug-in names as in ``smetool list`` (smetool's and those of installed packages).
    references : iterable of Reference
        More entries (e.g. :data:`smetool.analysis.REFERENCES`, or those of a
        :class:`~smetool.VerifyResult`).

    Returns
    -------
    str
        The entries, smetool's first, each once, separated by blank lines.

    Raises
    ------
    ValueError
        For an unknown solver or plug-in name (the message lists the known ones).

    Examples
    --------
    >>> print(citation(solver="heun", plugin="dropout"))  # doctest: +ELLIPSIS
    @software{smetool,...
    """
    groups: list[Iterable[Reference]] = []
    for name in _names(solver):
        if name not in SOLVERS:
            raise ValueError(f"`solver` must be one of {', '.join(SOLVERS)}; got {name!r}.")
        groups.append(SOLVERS[name].references)
    for name in _names(plugin):
        if name not in plugins():
            raise ValueError(f"`plugin` must be one of {', '.join(sorted(plugins()))}; got {name!r}.")
        groups.append(get_plugin(name).references)
    groups.append(references)
    return format_citation(ref for group in groups for ref in group)
