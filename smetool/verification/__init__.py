"""Verification of an SME against its discrete algorithm (probe, weak errors, the series test,
report), and of a scheme against its SDE (:func:`convergence`, :func:`work_precision`)."""

from .convergence import REFERENCES, convergence
from .convergence_result import ConvergenceResult
from .probe import PluginError, probe_plugin
from .result import ControlResult, VerifyResult, VerifyRow
from .verify import check_learning_rates, verify
from .work_precision import WorkPrecision, work_precision

__all__ = ["verify", "VerifyResult", "VerifyRow", "ControlResult", "check_learning_rates",
           "PluginError", "probe_plugin", "convergence", "ConvergenceResult", "REFERENCES",
           "work_precision", "WorkPrecision"]
