"""Integrators: :func:`solve` (one grid) and :func:`solve_coupled` (two grids on one Brownian
path), both on the one time loop of :mod:`smetool.integrate.common`."""

from .common import LoopOutcome, as_solver, checked_diffusion, make_generator, time_loop
from .coupled import CoupledSolution, LinearTangent, solve_coupled
from .solve import NonFiniteError, Solution, solve

__all__ = [
    "solve",
    "Solution",
    "NonFiniteError",
    "solve_coupled",
    "CoupledSolution",
    "LinearTangent",
    "time_loop",
    "LoopOutcome",
    "make_generator",
    "as_solver",
    "checked_diffusion",
]
