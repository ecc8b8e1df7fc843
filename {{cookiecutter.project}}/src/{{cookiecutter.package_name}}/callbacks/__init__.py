"""Callbacks of our own: loss checks, the guard that keeps bookkeeping from stopping a run, system
monitoring and validation images."""

from .bookkeeping import Bookkeeping
from .finite_loss import FiniteLossGuard, NonFiniteLossError
from .system_monitor import SystemMonitor
from .validation_images import ValidationImages

__all__ = ["Bookkeeping", "FiniteLossGuard", "NonFiniteLossError", "SystemMonitor", "ValidationImages"]
