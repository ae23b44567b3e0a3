"""Plug-ins: discrete training algorithms paired with their SMEs."""

from .base import Algorithm, TestFunction

__all__ = ["Algorithm", "TestFunction"]
