"""Analyses of dropout's implicit regularization, flatness, noise structure and condensation.

Modules: :mod:`.hessian` (exact batched Hessians), :mod:`.flatness` (Hessian spectrum, Hessian
and interval flatness), :mod:`.variance` (random gradient / trajectory covariances, PCA,
power-law fits), :mod:`.variance_flatness`, :mod:`.alignment` (``α(H, Σ)`` with a Haar
baseline), :mod:`.condensation`, :mod:`.training` (implicit regularizers, batched dropout / GD
runs), :mod:`.findings` (the papers' claims with margins) and :mod:`.report`
(:func:`analyze_dropout`, figures in :mod:`.report_figures`) for the two-layer problem; for any
network, :mod:`.subjects` (what a network must provide), :mod:`.network`
(:func:`analyze_network`, figures in :mod:`.network_figures`), :mod:`.verdicts` (holds / fails /
inconclusive with negative controls) and :mod:`.trajectory_windows` (the trajectory relations
against the window length).
"""

from .alignment import (
    AlignmentResult,
    alignment,
    alignment_from_samples,
    alignment_with_baseline,
    haar_baseline_moments,
    haar_orthogonal,
    rotated_alignment,
)
from .condensation import (
    OrientationAmplitude,
    OrientationClusters,
    cosine_similarity_matrix,
    effective_orientations,
    orientation_amplitude,
    unit_orientations,
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
from .network import HessianSummary, NetworkReport, analyze_network, hessian_summary
from .report import (
    REFERENCES,
    AlignmentTrace,
    AnalysisReport,
    Finding,
    analyze_dropout,
    load_problem,
)
from .subjects import BUILTIN_SETTINGS, NetSubject, ProblemSubject, Subject, builtin_subject
from .training import ImplicitRegularization, Trajectory, implicit_regularization, train
from .trajectory_windows import (
    WindowScan,
    detrend,
    flat_noise_share,
    linear_surrogate,
    variance_growth,
    window_scan,
)
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
from .variance_flatness import (
    VarianceFlatness,
    sample_principal_components,
    variance_flatness,
    variance_flatness_from_samples,
)
from .verdicts import Verdict, decide, permuted_slopes, sign_flipped

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
    "sample_principal_components",
    "variance_flatness_from_samples",
    "alignment_from_samples",
    "haar_baseline_moments",
    "rotated_alignment",
    "unit_orientations",
    "HessianSummary",
    "NetworkReport",
    "analyze_network",
    "detrend",
    "hessian_summary",
    "BUILTIN_SETTINGS",
    "NetSubject",
    "ProblemSubject",
    "Subject",
    "builtin_subject",
    "WindowScan",
    "flat_noise_share",
    "linear_surrogate",
    "window_scan",
    "variance_growth",
    "Verdict",
    "decide",
    "permuted_slopes",
    "sign_flipped",
]
