"""Citation metadata stays equal to the package version; citation() lists what was used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import smetool
from smetool.citation import citation

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_version_equals_package_version():
    cff = (ROOT / "CITATION.cff").read_text()
    cff_version = re.search(r"^version:\s*(\S+)", cff, re.M).group(1)
    # tomllib is 3.11+; the version line of [project] is simple enough to read directly
    project = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                        re.M).group(1)
    assert cff_version == project
    if smetool.__version__ != "0+unknown":  # installed: the metadata is the single source
        assert smetool.__version__ == project


def test_citation_lists_smetool_first_and_the_papers_used():
    text = citation(solver="heun", plugin="dropout")
    assert text.startswith("@software{smetool")
    assert f"version = {{{smetool.__version__}}}" in text
    assert "zhang2024dropout" in text and "milstein1997small" in text and "li2019sme" in text
    assert "li2021svag" not in text
    assert citation().count("@") == 1
    assert citation(plugin=["sgd", "dropout"]).count("li2019sme") == 1


def test_citation_rejects_unknown_names():
    with pytest.raises(ValueError, match="`solver` must be one of euler, milstein"):
        citation(solver="rk4")
    with pytest.raises(ValueError, match="`plugin` must be one of"):
        citation(plugin="adamw")


def test_every_registered_plugin_has_its_papers():
    from smetool.algorithms.registry import plugins

    for name in plugins():
        assert citation(plugin=name).count("@") >= 2, name


def test_every_solver_and_plugin_class_docstring_has_references():
    import inspect

    import torch

    from smetool.algorithms.registry import plugins
    from smetool.solvers import SOLVERS

    classes = set(SOLVERS.values())
    for spec in plugins().values():
        algorithm = spec.build(dtype=torch.float64, device="cpu")
        classes |= {type(algorithm), type(algorithm.sme(min(spec.lrs), 1))}
        assert algorithm.cited_references(), spec.name
    for cls in SOLVERS.values():
        assert cls.references, cls.__name__
    missing = [c.__name__ for c in classes if "References\n----------" not in inspect.getdoc(c)]
    assert not missing, missing


def test_wrappers_cite_their_papers_and_those_of_their_base():
    from smetool import SVAG, DropoutAlgorithm, HeavyBallSGD, SGDLeastSquares

    def keys(algorithm):
        return [ref.key for ref in algorithm.cited_references()]

    dropout = DropoutAlgorithm.default(width=4)
    assert keys(dropout) == ["zhang2024dropout", "li2019sme"]
    assert keys(SVAG(dropout, 0.04)) == ["li2021svag", "zhang2024dropout", "li2019sme"]
    assert keys(SVAG(SGDLeastSquares.default(), 0.5)) == ["li2021svag", "li2019sme"]
    assert keys(HeavyBallSGD.default()) == ["li2019sme"]


def test_a_users_own_plugin_and_solver_are_cited_from_their_declarations():
    from smetool import EulerMaruyama, Reference, SGDLeastSquares, verify

    mine = Reference.of("doe2026noisy", "article", title="Noisy GD", author="Doe, J.", year="2026")

    class MySolver(EulerMaruyama):
        name = "my-euler"
        references = (mine,)

    class MySGD(SGDLeastSquares):
        references = (mine,)

    result = verify(MySGD.default(), [0.25, 0.125], horizon=1.0, n_paths=50, method=MySolver(),
                    seed=0, progress=False)
    assert result.citation().count("doe2026noisy") == 1
    assert citation(references=result.references) == result.citation()


def test_verify_result_cites_its_solver_and_plugin():
    from smetool import SGDLeastSquares, verify

    result = verify(SGDLeastSquares.default(), [0.25, 0.125], horizon=1.0, n_paths=200,
                    method="euler", seed=0, progress=False)
    text = result.citation()
    assert text == citation(solver="euler", plugin="sgd")
    assert "li2019sme" in text and "kloeden1992" in text and "milstein1997small" not in text

