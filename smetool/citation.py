"""``citation()``: BibTeX for smetool and for the papers behind the solver and plug-in you ran."""

from __future__ import annotations

from typing import Iterable

__all__ = ["citation", "plugins_of", "BIBTEX"]

BIBTEX: dict[str, str] = {
    "smetool": """@software{smetool,
  title   = {smetool: stochastic modified equations of training algorithms},
  author  = {{The smetool developers}},
  version = {{version}},
  year    = {2026},
  note    = {Batched SDE solvers and weak-order verification in PyTorch}
}""",
    "zhang2024dropout": """@inproceedings{zhang2024dropout,
  title     = {Stochastic Modified Equations and Dynamics of Dropout Algorithm},
  author    = {Zhang, Zhongwang and Li, Yuqing and Luo, Tao and Xu, Zhi-Qin John},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2024}
}""",
    "zhang2024implicit": """@article{zhang2024implicit,
  title   = {Implicit Regularization of Dropout},
  author  = {Zhang, Zhongwang and Xu, Zhi-Qin John},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year    = {2024}
}""",
    "zhang2021variance": """@article{zhang2021variance,
  title   = {A Variance Principle Explains why Dropout Finds Flatter Minima},
  author  = {Zhang, Zhongwang and Zhou, Hanxu and Xu, Zhi-Qin John},
  journal = {arXiv preprint arXiv:2111.01022},
  year    = {2021}
}""",
    "li2019sme": """@article{li2019sme,
  title   = {Stochastic Modified Equations and Dynamics of Stochastic Gradient Algorithms {I}:
             Mathematical Foundations},
  author  = {Li, Qianxiao and Tai, Cheng and E, Weinan},
  journal = {Journal of Machine Learning Research},
  volume  = {20},
  number  = {40},
  pages   = {1--47},
  year    = {2019}
}""",
    "li2021svag": """@inproceedings{li2021svag,
  title     = {On the Validity of Modeling {SGD} with Stochastic Differential Equations ({SDE}s)},
  author    = {Li, Zhiyuan and Malladi, Sadhika and Arora, Sanjeev},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021}
}""",
    "malladi2022adaptive": """@inproceedings{malladi2022adaptive,
  title     = {On the {SDE}s and Scaling Rules for Adaptive Gradient Algorithms},
  author    = {Malladi, Sadhika and Lyu, Kaifeng and Panigrahi, Abhishek and Arora, Sanjeev},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {35},
  year      = {2022}
}""",
    "kingma2015adam": """@inproceedings{kingma2015adam,
  title     = {Adam: A Method for Stochastic Optimization},
  author    = {Kingma, Diederik P. and Ba, Jimmy},
  booktitle = {International Conference on Learning Representations},
  year      = {2015}
}""",
    "kloeden1992": """@book{kloeden1992,
  title     = {Numerical Solution of Stochastic Differential Equations},
  author    = {Kloeden, Peter E. and Platen, Eckhard},
  publisher = {Springer},
  year      = {1992}
}""",
    "milstein1997small": """@article{milstein1997small,
  title   = {Numerical Methods in the Weak Sense for Stochastic Differential Equations with
             Small Noise},
  author  = {Milstein, G. N. and Tretyakov, M. V.},
  journal = {SIAM Journal on Numerical Analysis},
  volume  = {34},
  number  = {6},
  pages   = {2142--2167},
  year    = {1997}
}""",
}

# which papers each solver and plug-in rests on
_SOLVER_KEYS = {
    "euler": ["kloeden1992"],
    "milstein": ["kloeden1992"],
    "platen": ["kloeden1992"],
    "heun": ["milstein1997small", "kloeden1992"],
}
_PLUGIN_KEYS = {
    "dropout": ["zhang2024dropout", "li2019sme"],
    "sgd": ["li2019sme"],
    "momentum": ["li2019sme"],
    "svag": ["li2021svag", "li2019sme"],
    "svag-dropout": ["li2021svag", "zhang2024dropout"],
    "rmsprop": ["malladi2022adaptive"],
    "adam": ["malladi2022adaptive", "kingma2015adam"],
    "analysis": ["zhang2024implicit", "zhang2021variance", "zhang2024dropout"],
}


def citation(solver: str | Iterable[str] | None = None,
             plugin: str | Iterable[str] | None = None) -> str:
    """BibTeX entries for smetool and for the papers behind what you used.

    Parameters
    ----------
    solver : str or iterable of str, optional
        Solver names as in ``smetool list`` (``"euler"``, ``"milstein"``, ``"platen"``,
        ``"heun"``).
    plugin : str or iterable of str, optional
        Plug-in names as in ``smetool list`` (``"dropout"``, ``"sgd"``, ``"momentum"``,
        ``"svag"``, ``"svag-dropout"``, ``"rmsprop"``, ``"adam"``) or ``"analysis"`` for the
        dropout analyses.

    Returns
    -------
    str
        The entries, smetool's first, separated by blank lines.

    Raises
    ------
    ValueError
        For an unknown solver or plug-in name (the message lists the known ones).

    Examples
    --------
    >>> print(citation(solver="heun", plugin="dropout"))  # doctest: +ELLIPSIS
    @software{smetool,...
    """
    from . import __version__

    keys = ["smetool"]
    for names, table, what in ((solver, _SOLVER_KEYS, "solver"), (plugin, _PLUGIN_KEYS, "plugin")):
        if names is None:
            continue
        for name in [names] if isinstance(names, str) else list(names):
            if name not in table:
                raise ValueError(f"`{what}` must be one of {', '.join(table)}; got {name!r}.")
            keys.extend(k for k in table[name] if k not in keys)
    entries = [BIBTEX[k] for k in keys]
    entries[0] = entries[0].replace("{version}", __version__)
    return "\n\n".join(entries)


def plugins_of(algorithm) -> list[str]:
    """The plug-in names whose papers an algorithm rests on, for :func:`citation`.

    The algorithm's own ``name`` and, for wrappers such as SVAG or heavy-ball SGD, that of the
    ``base`` they run on (``SVAG`` on dropout gives ``["svag-dropout", "dropout"]``). Names
    :func:`citation` does not know (a user's own plug-in) are left out.
    """
    names, base = [], getattr(algorithm, "base", None)
    name = getattr(algorithm, "name", None)
    if name == "svag" and getattr(base, "name", None) == "dropout":
        name = "svag-dropout"
    for candidate in (name, getattr(base, "name", None)):
        if candidate in _PLUGIN_KEYS and candidate not in names:
            names.append(candidate)
    return names

