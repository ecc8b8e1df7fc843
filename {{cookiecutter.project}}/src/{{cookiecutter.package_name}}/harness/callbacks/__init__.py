"""Callbacks of our own: loss checks, the guard that keeps bookkeeping from stopping a run, summary.json
kept current, system monitoring, training throughput, validation images, weight averaging (EMA) and
progress lines for log files; and Lightning's checkpoint and early-stopping callbacks, made cheaper
per step, with last.ckpt kept current (monitors.py)."""

from .bookkeeping import Bookkeeping
from .ema import EMAWeightAveraging
from .finite_loss import FiniteLossGuard, NonFiniteLossError
from .monitors import EarlyStopping, ModelCheckpoint
from .progress import LineProgress, progress_bar
from .run_progress import RunProgress
from .system_monitor import SystemMonitor
from .throughput import TrainingThroughput
from .validation_images import ValidationImages

__all__ = [
    "Bookkeeping",
    "EMAWeightAveraging",
    "EarlyStopping",
    "FiniteLossGuard",
    "LineProgress",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "RunProgress",
    "SystemMonitor",
    "TrainingThroughput",
    "ValidationImages",
    "progress_bar",
]
