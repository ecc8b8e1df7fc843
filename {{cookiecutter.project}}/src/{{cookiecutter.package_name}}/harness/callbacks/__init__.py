"""Callbacks of our own: loss checks, the guard that keeps bookkeeping from stopping a run, system
monitoring and validation images; and Lightning's checkpoint and early-stopping callbacks, made cheaper
per step (monitors.py)."""

from .bookkeeping import Bookkeeping
from .finite_loss import FiniteLossGuard, NonFiniteLossError
from .monitors import EarlyStopping, ModelCheckpoint
from .system_monitor import SystemMonitor
from .validation_images import ValidationImages

__all__ = [
    "Bookkeeping",
    "EarlyStopping",
    "FiniteLossGuard",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "SystemMonitor",
    "ValidationImages",
]
