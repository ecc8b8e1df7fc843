"""Progress for people and for log files: Lightning's live bar in a terminal, plain lines elsewhere.

A batch job's stdout is a file: a live bar there is one endless line of carriage returns and
cursor moves. ``LineProgress`` writes whole lines instead, one per epoch and one at every
``every_percent`` of an epoch that runs longer than ``min_interval_s`` between lines, each with the
step, the bar's metrics (``self.log(..., prog_bar=True)``), training samples/s and the time left.
"""

import datetime as dt
import math
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar
from pytorch_lightning.utilities.data import extract_batch_size


def progress_bar(refresh_rate: int, every_percent: int, min_interval_s: float) -> ProgressBar:
    """The live bar when stdout is a terminal, plain lines when it is a file or a pipe."""
    if sys.stdout.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return LineProgress(every_percent=every_percent, min_interval_s=min_interval_s)


def _duration(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(seconds)))


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LineProgress(ProgressBar):
    """One line per epoch, and one at every ``every_percent`` of a long epoch; no ``\\r``, no escape codes."""

    def __init__(self, every_percent: int = 10, min_interval_s: float = 30.0):
        super().__init__()
        if not 0 < every_percent <= 100:
            raise ValueError(f"every_percent={every_percent}: give a percentage of an epoch from 1 to 100.")
        self.every_percent = every_percent
        self.min_interval_s = min_interval_s
        self._enabled = True
        self._paused_s = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._first_step = trainer.global_step
        self._total_steps = trainer.estimated_stepping_batches
        self._started = time.monotonic()
        self._paused_s = 0.0
        # A run resumed inside an epoch (a requeued job) gets no on_train_epoch_start for it.
        self._start_interval()

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._start_interval()

    def _start_interval(self) -> None:
        self._interval_start = self._training_clock()
        self._interval_samples = 0
        self._last_mark = 0
        self._last_line_at = time.monotonic()

    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._interval_samples += extract_batch_size(batch)
        if not self._enabled:
            return
        done, total = batch_idx + 1, self.total_train_batches
        if math.isinf(total):
            due = True
        else:
            mark = done * 100 // total // self.every_percent
            due = done < total and mark > self._last_mark
            if due:
                self._last_mark = mark
        if due and time.monotonic() - self._last_line_at >= self.min_interval_s:
            where = f"{done}/{total} batches ({done * 100 // total}%)" if not math.isinf(total) else f"batch {done}"
            self._line(trainer, pl_module, where)

    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._validation_started = time.monotonic()

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # samples/s counts training only: the clock stops while validation runs.
        self._paused_s += time.monotonic() - self._validation_started

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._enabled:
            self._line(trainer, pl_module, "done")

    def _training_clock(self) -> float:
        return time.monotonic() - self._paused_s

    def _line(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", where: str) -> None:
        now = self._training_clock()
        elapsed = now - self._interval_start
        rate = self._interval_samples / elapsed if elapsed > 0 else math.nan
        self._interval_start, self._interval_samples = now, 0
        self._last_line_at = time.monotonic()

        epochs = f"/{trainer.max_epochs - 1}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        total_steps = self._total_steps
        steps = f"step {trainer.global_step}" + ("" if math.isinf(total_steps) else f"/{int(total_steps)}")
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        parts = [
            f"epoch {trainer.current_epoch}{epochs} {where}",
            steps,
            " ".join(f"{name}={_value(value)}" for name, value in metrics.items()),
            f"{rate:,.0f} samples/s",
        ]
        if left := self._time_left(trainer, total_steps):
            parts.append(f"eta {left}")
        print("  ".join(part for part in parts if part), flush=True)

    def _time_left(self, trainer: "pl.Trainer", total_steps: float) -> str | None:
        """From the wall time per step of this run so far (validation included); an upper bound with early stopping."""
        done = trainer.global_step - self._first_step
        if done <= 0 or math.isinf(total_steps):
            return None
        per_step = (time.monotonic() - self._started) / done
        return _duration(max(total_steps - trainer.global_step, 0) * per_step)
