"""Analyses of dropout's implicit regularization, flatness, noise structure and condensation.

Modules: :mod:`.hessian` (exact batched Hessians), :mod:`.flatness` (Hessian spectrum, Hessian
and interval flatness), :mod:`.variance` (random gradient / trajectory covariances, PCA,
power-law fits), :mod:`.variance_flatness`, :mod:`.alignment` (``α(H, Σ)`` with a Haar
baseline), :mod:`.condensation`, :mod:`.training` (implicit regularizers, batched dropout / GD
runs), :mod:`.findings` (the papers' claims with margins) and :mod:`.report`
(:func:`analyze_dropout`, figures in :mod:`.report_figures`).
"""

from .alignment import AlignmentResult, alignment, alignment_with_baseline, haar_orthogonal
from .condensation import (
    OrientationAmplitude,
    OrientationClusters,
    cosine_similarity_matrix,
    effective_orientations,
    orientation_amplitude,
)
from .flatness import (
    HessianSpectrum,
    IntervalFlatness,
    UnboundedIntervalError,
    hessian_flatness,
    hessian_spectrum,
    interval_flatness,
)
from .hessian import (
    expected_loss_hessian,
    implicit_regularizer_hessian,
    loss_hessian,
    output_jacobian,
    problem_hessian,
)
from .report import (
    REFERENCES,
    AlignmentTrace,
    AnalysisReport,
    Finding,
    analyze_dropout,
    load_problem,
)
from .training import ImplicitRegularization, Trajectory, implicit_regularization, train
from .variance import (
    CovarianceEstimate,
    PowerLawFit,
    PrincipalComponents,
    fit_power_law,
    gradient_noise_covariance,
    principal_components,
    sample_covariance,
    sample_dropout_gradients,
    trajectory_covariance,
)
from .variance_flatness import VarianceFlatness, variance_flatness

__all__ = [
    "REFERENCES",
    "AlignmentResult",
    "alignment",
    "alignment_with_baseline",
    "haar_orthogonal",
    "OrientationAmplitude",
    "OrientationClusters",
    "cosine_similarity_matrix",
    "effective_orientations",
    "orientation_amplitude",
    "HessianSpectrum",
    "IntervalFlatness",
    "UnboundedIntervalError",
    "hessian_flatness",
    "hessian_spectrum",
    "interval_flatness",
    "expected_loss_hessian",
    "implicit_regularizer_hessian",
    "loss_hessian",
    "output_jacobian",
    "problem_hessian",
    "AlignmentTrace",
    "AnalysisReport",
    "Finding",
    "analyze_dropout",
    "load_problem",
    "ImplicitRegularization",
    "Trajectory",
    "implicit_regularization",
    "train",
    "CovarianceEstimate",
    "PowerLawFit",
    "PrincipalComponents",
    "fit_power_law",
    "gradient_noise_covariance",
    "principal_components",
    "sample_covariance",
    "sample_dropout_gradients",
    "trajectory_covariance",
    "VarianceFlatness",
    "variance_flatness",
]
