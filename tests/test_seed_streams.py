"""Every step (learning rate) of a weak-error estimate draws its own random stream (issue 25).

The order fit treats the errors at different steps as independent. A chunk seed without the step
index gives every step the same random numbers: a mutant that did so survived the whole suite
(two learning rates got bit-identical means). Here the producers ignore the step, so the means
differ from step to step only through the random numbers: deterministic, no tolerance.
"""

from __future__ import annotations

import torch

from smetool import ExactReference, weak_error

F64 = torch.float64
STEPS = [0.1, 0.05, 0.025]
TESTS = {"x": lambda x: x[:, 0]}


def _draws(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(1, n, 1, generator=generator, dtype=F64)  # (S, P, D), whatever the step


def _table(reference, n_paths: int = 64, **kwargs):
    return weak_error(reference, lambda step: _draws, TESTS, n_paths, steps=STEPS, seed=3,
                      progress=False, **kwargs)


def test_each_step_has_its_own_stream_on_both_sides():
    table = _table(lambda step: _draws)
    for means in (table.approx_means[0, 0], table.reference_means[0, 0]):
        assert len(set(means.tolist())) == len(STEPS), means
    # ... and the two sides are independent of each other, step by step (no CRN asked for).
    assert not torch.equal(table.approx_means, table.reference_means)


def test_each_chunk_has_its_own_stream_and_the_streams_are_reproducible():
    one = _table(ExactReference({"x": 0.0}), chunk_size=16)
    assert len(set(one.approx_means[0, 0].tolist())) == len(STEPS)
    again = _table(ExactReference({"x": 0.0}), chunk_size=16)
    assert torch.equal(one.approx_means, again.approx_means)
    # Four chunks of 16 are four streams: 64 paths are not the first chunk's 16 draws 4 times.
    first = _table(ExactReference({"x": 0.0}), n_paths=16, chunk_size=16)
    assert not torch.equal(one.approx_means, first.approx_means)


def test_common_random_numbers_share_the_stream_within_a_step_only():
    table = _table(lambda step: _draws, common_random_numbers=True)
    assert torch.equal(table.approx_means, table.reference_means)
    assert len(set(table.approx_means[0, 0].tolist())) == len(STEPS)


def test_the_progress_bar_counts_paths_per_side_and_says_how_many_are_simulated(capsys):
    # 500 paths per side, both sides and one control: the bar said "1.50k path".
    weak_error(lambda step: _draws, lambda step: _draws, TESTS, 500, steps=[0.1], seed=3,
               controls={"wrong": lambda step: _draws}, progress=True)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()
    bars = [line for line in final if "path/s" in line]
    assert bars and all("/500 [" in b and "paths per side (×3 simulated)" in b for b in bars), bars
    assert "1.50k" not in err
