"""Statistics of Monte-Carlo output: streaming moments, order fits, extrapolation (no simulation)."""

from .extrapolation import Extrapolation, richardson, richardson_weights
from .moments import StreamingMoments, t_quantile
from .orders import FlaggedPoint, OrderFit, TwoTermFit, WeakOrderWarning, fit_order
from .verdict import OrderVerdict, Verdict, judge_order, neighbour_orders

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
    "OrderVerdict",
    "judge_order",
    "neighbour_orders",
]
