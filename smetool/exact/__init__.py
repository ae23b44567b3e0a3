"""Exact (closed-form, non-random) references for testing solvers and SMEs.

:mod:`smetool.exact.sde_references` holds the SDE problems with known moments (Ornstein–Uhlenbeck,
geometric Brownian motion, linear SDEs with non-commutative noise, the nonlinear ``sinh`` problem)
and the exact moments of Euler–Maruyama and Platen's scheme on some of them.
:mod:`smetool.exact.linear_moments` and its problems (:mod:`~smetool.exact.sgd_moments`,
:mod:`~smetool.exact.momentum_moments`, :mod:`~smetool.exact.svag_moments`,
:mod:`~smetool.exact.sam_moments`) give the exact moments of linear stochastic training algorithms
and of their SMEs, hence exact weak errors; :mod:`smetool.exact.scale_invariant` the exact norm
dynamics of SGD with weight decay on a scale-invariant loss and of its SME.
:mod:`smetool.exact.sde_problems` is a library of test problems for every noise kind — SciML's
SDEProblemLibrary problems with analytic solutions and time-dependent, non-symmetric and
parameterised ones — each with its exact solution and expectations.
"""

from .linear_moments import AffineGradientModel, LinearMomentModel
from .moment_results import ExactWeakErrors, MomentPath, Quadratic
from .momentum_moments import HeavyBallMoments
from .problem_library import PROBLEMS, gbm, library_problem, noncommutative, problem_parameters
from .sam_moments import USAMMoments
from .scale_invariant import ScaleInvariantNorms
from .sde_problems import (
    ROTATION,
    LibraryProblem,
    Observable,
    additive_problem,
    gaussian_expectation,
    rotation_problem,
    sciml_additive,
    sciml_additive_system,
    sciml_cubic,
    sciml_linear,
    sciml_linear_2d,
    sciml_wave,
    time_changed_noncommutative,
    time_dependent_gbm,
)
from .sde_references import (
    NONCOMMUTATIVE_A,
    NONCOMMUTATIVE_B,
    Moments,
    ReferenceProblem,
    diagonal_linear_problem,
    gbm_em_moments,
    gbm_moment,
    gbm_platen_moments,
    gbm_problem,
    gbm_sde,
    linear_sde,
    linear_sde_moment_tensor,
    linear_sde_moments,
    noncommutative_problem,
    ou_em_moments,
    ou_moments,
    ou_sde,
    sinh_expectation,
    sinh_moments,
    sinh_problem,
    sinh_sde,
    sinh_test_function,
)
from .sgd_moments import LeastSquaresSGDMoments, LinearDropoutMoments
from .svag_moments import SVAGMoments, svag_amplification, svag_coefficients

__all__ = [
    "PROBLEMS",
    "gbm",
    "noncommutative",
    "library_problem",
    "problem_parameters",
    "LinearMomentModel",
    "AffineGradientModel",
    "ExactWeakErrors",
    "MomentPath",
    "Quadratic",
    "HeavyBallMoments",
    "LeastSquaresSGDMoments",
    "LinearDropoutMoments",
    "SVAGMoments",
    "USAMMoments",
    "ScaleInvariantNorms",
    "svag_amplification",
    "svag_coefficients",
    "ROTATION",
    "LibraryProblem",
    "Observable",
    "additive_problem",
    "gaussian_expectation",
    "rotation_problem",
    "sciml_additive",
    "sciml_additive_system",
    "sciml_cubic",
    "sciml_linear",
    "sciml_linear_2d",
    "sciml_wave",
    "time_changed_noncommutative",
    "time_dependent_gbm",
    "NONCOMMUTATIVE_A",
    "NONCOMMUTATIVE_B",
    "Moments",
    "ReferenceProblem",
    "diagonal_linear_problem",
    "gbm_em_moments",
    "gbm_moment",
    "gbm_platen_moments",
    "gbm_problem",
    "gbm_sde",
    "linear_sde",
    "linear_sde_moment_tensor",
    "linear_sde_moments",
    "noncommutative_problem",
    "ou_em_moments",
    "ou_moments",
    "ou_sde",
    "sinh_expectation",
    "sinh_moments",
    "sinh_problem",
    "sinh_sde",
    "sinh_test_function",
]
