"""A Lightning callback that times the training part of each epoch, for benchmarks/throughput.py.

The benchmark adds it to a baked project's own config from the command line
(``+callbacks.epoch_timer._target_=epoch_timer.EpochTimer``), so that the run it times
is the user's pipeline plus this one callback. Each epoch's clock stops when validation
starts (or the epoch ends), so validation and checkpointing are not counted. The GPU is
synchronized at the start and end of each epoch only, never per step. Besides the wall
clock it reads the process's CPU time, which other programs on a shared machine disturb less.
"""

import json
import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback


class EpochTimer(Callback):
    def __init__(self, path: str):
        self.path = Path(path)
        self.first_step_at: float | None = None
        self.epochs: list[dict[str, float]] = []
        self._started: tuple[float, float] | None = None
        self._samples = 0

    @staticmethod
    def _now(pl_module) -> tuple[float, float]:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter(), time.process_time()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._samples = 0
        self._started = self._now(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_at is None:
            # Wall-clock time, comparable with the launch time the benchmark records.
            self.first_step_at = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += batch[-1].numel()  # labels: one per image; a language model's targets: one per token

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._stop(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write()

    def _write(self) -> None:
        record = {"first_step_at": self.first_step_at, "epochs": self.epochs, "peak_rss_mb": peak_rss_mb()}
        self.path.write_text(json.dumps(record))

    def _stop(self, pl_module) -> None:
        if self._started is None:
            return
        (wall, cpu), (wall_started, cpu_started) = self._now(pl_module), self._started
        self._started = None
        self.epochs.append({"samples": self._samples, "seconds": wall - wall_started, "cpu_seconds": cpu - cpu_started})
        self._write()


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far. Not getrusage: its figure keeps the peak of the
    process that forked this one (here the benchmark, with its own data) across the exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None
