"""Verification of an SME against its discrete algorithm: probe, weak errors, order fits, report."""

from .probe import PluginError, probe_plugin
from .result import ControlResult, VerifyResult, VerifyRow
from .verify import check_learning_rates, verify

__all__ = ["verify", "VerifyResult", "VerifyRow", "ControlResult", "check_learning_rates",
           "PluginError", "probe_plugin"]
