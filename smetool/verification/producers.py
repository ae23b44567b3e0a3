"""The two sides of a weak-error test of an SME: the discrete algorithm and its SME, as producers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..algorithms.base import Algorithm
from ..integrate import solve_coupled
from ..montecarlo import PathSample
from ..sde import SDE
from ..solvers import Solver

__all__ = ["AlgorithmProducer", "CoupledSMEProducer"]


@dataclass(frozen=True)
class AlgorithmProducer:
    """``n`` paths of the discrete algorithm after ``steps`` steps of learning rate ``lr``.

    Returns the final states, ``(1, n, D)``.
    """

    algorithm: Algorithm
    lr: float
    steps: int
    dtype: torch.dtype
    device: torch.device

    def __call__(self, n: int, generator: torch.Generator) -> Tensor:
        x = self.algorithm.initial_state(n, dtype=self.dtype, device=self.device)
        for _ in range(self.steps):
            x = self.algorithm.step(x, self.lr, generator)
        return x.unsqueeze(0)


@dataclass(frozen=True)
class CoupledSMEProducer:
    """``n`` paths of an SME at step ``h`` and, on the same Brownian path, at ``2h``.

    Returns a :class:`~smetool.montecarlo.PathSample` with the final states ``(1, n, D)`` and the
    coarse ones (the pipeline's estimate of the SME solver's own error). Non-finite paths are
    carried on (``on_nonfinite="continue"``) so that the Monte-Carlo engine counts them per side.
    """

    algorithm: Algorithm
    sde: SDE
    solver: Solver
    horizon: float
    h: float
    dtype: torch.dtype
    device: torch.device

    def __call__(self, n: int, generator: torch.Generator) -> PathSample:
        x0 = self.algorithm.initial_state(n, dtype=self.dtype, device=self.device)
        sol = solve_coupled(self.sde, x0, (0.0, self.horizon), dt=self.h, method=self.solver,
                            generator=generator, on_nonfinite="continue")
        return PathSample(states=sol.fine.unsqueeze(0), coarse=sol.coarse.unsqueeze(0))
