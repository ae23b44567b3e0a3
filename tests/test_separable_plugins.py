"""The four plug-ins of issue 17 (usam, sam, signsgd, sgd-wd) meet the control-variate contract
(``SeparableNoise``): a step is ``step_with`` of a fresh ``draw``, draw for draw; ``mean_step`` and
the SME's drift are differentiable by ``torch.func.jvp``; and ``smetool list`` shows each with
its citations."""

from __future__ import annotations

import pytest
import torch

from smetool.algorithms import SeparableNoise
from smetool.algorithms.registry import get_plugin
from smetool.cli import main

NAMES = ["usam", "sam", "signsgd", "sgd-wd"]


@pytest.mark.parametrize("name", NAMES)
def test_step_is_step_with_a_fresh_draw_and_the_means_are_differentiable(name):
    algo = get_plugin(name).build()
    assert isinstance(algo, SeparableNoise)
    x = algo.initial_state(6) + 0.1 * torch.randn(6, algo.initial_state(1).shape[1],
                                                  generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64)
    lr = 1 / 16
    stepped = algo.step(x, lr, torch.Generator().manual_seed(3))
    noise = algo.draw(6, lr, torch.Generator().manual_seed(3), dtype=x.dtype, device=x.device)
    assert torch.equal(algo.step_with(x, lr, noise), stepped)
    tangent = torch.ones_like(x)
    for fn in (lambda y: algo.mean_step(y, lr), lambda y: algo.sme(lr).drift(0.0, y)):
        value, jvp = torch.func.jvp(fn, (x,), (tangent,))
        assert value.shape == x.shape and bool(torch.isfinite(jvp).all())
    cov = algo.step_covariance(x, lr)
    assert cov is None if name == "sam" else cov.shape == (6, x.shape[1], x.shape[1])


def test_list_shows_the_new_plugins_with_their_citations(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, keys in (("usam", "compagnoni2023sam, foret2021sam"),
                       ("sam", "compagnoni2023sam, foret2021sam"),
                       ("signsgd", "compagnoni2025adaptive, bernstein2018signsgd"),
                       ("sgd-wd", "li2020intrinsic, li2019sme")):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert f"[{keys}]" in line, line
