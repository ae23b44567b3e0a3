"""The papers' analyses for every algorithm with a landscape: one pipeline, pluggable measures.

:func:`analyze` (one algorithm against gradient descent) and :func:`compare` (several algorithms
trained to the same loss) in :mod:`.pipeline`, built on the one training loop
(:mod:`smetool.algorithms.training`, :meth:`Algorithm.step
<smetool.algorithms.Algorithm.step>`) and the landscape
contract (:class:`~smetool.models.landscape.Landscape`); the trained state shared by the measures
in :mod:`.study`; the measures themselves in :mod:`.measures` (one module each, found by
:func:`~.measure.registered_measures`); findings with their verdicts and negative controls in
:mod:`.findings`; the record in :mod:`.report`. The numerical building blocks: :mod:`.flatness`
(Hessian, interval flatness), :mod:`.variance` (covariances, PCA, power laws, random gradient
data), :mod:`.variance_flatness`, :mod:`.alignment` (``α(H, Σ)`` with a Haar baseline),
:mod:`.condensation` and :mod:`.trajectory_windows`.
"""

from ..algorithms.training import Trajectory, train
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
    cosine_similarity,
    orientation_amplitude,
    unit_orientations,
)
from .findings import Finding, decide, decide_with_control, permuted_slopes, sign_flipped
from .flatness import (
    HessianSpectrum,
    IntervalFlatness,
    UnboundedIntervalError,
    hessian_flatness,
    hessian_spectrum,
    interval_flatness,
)
from .measure import Measure, Measurement, registered_measures
from .pipeline import REFERENCE, analyze, compare, initial_points
from .report import StudyReport
from .study import HessianSummary, Settings, Study, hessian_summary
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
    principal_components,
    sample_covariance,
    trajectory_covariance,
    update_samples,
)
from .variance_flatness import (
    VarianceFlatness,
    sample_principal_components,
    variance_flatness,
    variance_flatness_from_samples,
)

__all__ = [
    "analyze", "compare", "initial_points", "REFERENCE", "StudyReport", "Study", "Settings",
    "HessianSummary", "hessian_summary", "Measure", "Measurement", "registered_measures", "Trajectory",
    "train", "Finding", "decide", "decide_with_control", "permuted_slopes", "sign_flipped",
    "AlignmentResult", "alignment", "alignment_with_baseline", "alignment_from_samples",
    "haar_orthogonal", "haar_baseline_moments", "rotated_alignment",
    "OrientationAmplitude", "OrientationClusters", "cosine_similarity", "orientation_amplitude",
    "unit_orientations",
    "HessianSpectrum", "IntervalFlatness", "UnboundedIntervalError", "hessian_flatness",
    "hessian_spectrum", "interval_flatness",
    "WindowScan", "detrend", "flat_noise_share", "linear_surrogate", "variance_growth",
    "window_scan",
    "CovarianceEstimate", "PowerLawFit", "PrincipalComponents", "fit_power_law",
    "principal_components", "sample_covariance", "trajectory_covariance", "update_samples",
    "VarianceFlatness", "sample_principal_components", "variance_flatness",
    "variance_flatness_from_samples",
]
