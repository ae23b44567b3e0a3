"""Statistics of Monte-Carlo output: streaming moments, order fits, extrapolation (no simulation)."""

from .extrapolation import Extrapolation, richardson, richardson_weights
from .moments import StreamingMoments, t_quantile
from .orders import FlaggedPoint, OrderFit, TwoTermFit, WeakOrderWarning, fit_order
from .series import FIT_LEVEL, SeriesFit, SeriesVerdict, detection_limit, fit_series, judge_series
from .verdict import Verdict

__all__ = [
    "StreamingMoments",
    "t_quantile",
    "FlaggedPoint",
    "OrderFit",
    "TwoTermFit",
    "WeakOrderWarning",
    "fit_order",
    "Extrapolation",
    "richardson",
    "richardson_weights",
    "Verdict",
    "SeriesFit",
    "SeriesVerdict",
    "fit_series",
    "judge_series",
    "detection_limit",
    "FIT_LEVEL",
]
