"""Callbacks of our own: loss checks, the guard that keeps bookkeeping from stopping a run, summary.json
kept current, system monitoring and validation images; and Lightning's checkpoint and early-stopping
callbacks, made cheaper per step, with last.ckpt kept current (monitors.py)."""

from .bookkeeping import Bookkeeping
from .finite_loss import FiniteLossGuard, NonFiniteLossError
from .monitors import EarlyStopping, ModelCheckpoint
from .run_progress import RunProgress
from .system_monitor import SystemMonitor
from .validation_images import ValidationImages

__all__ = [
    "Bookkeeping",
    "EarlyStopping",
    "FiniteLossGuard",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "RunProgress",
    "SystemMonitor",
    "ValidationImages",
]
