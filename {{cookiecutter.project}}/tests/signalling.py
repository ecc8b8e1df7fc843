"""Callbacks that make a signal land at a chosen moment of a real run; added to a run as
``+callbacks.<name>._target_=signalling.<Class>`` (with ``tests/`` on PYTHONPATH).

``SignalAt`` signals its own process; ``PauseForSignal`` holds rank 0 at the moment the test asks
for, until a signal sent from outside (``scancel --signal=USR1``) has arrived, while the other
ranks run on into their next collective: the moment a handler that synchronised would hang.
"""

import os
import signal
import time
from pathlib import Path

from pytorch_lightning import Callback

from {{ cookiecutter.package_name }}.harness import preemption


class SignalAt(Callback):
    """Sends ``signum`` to this process once, at ``phase``: train (in the training step after global step
    ``step``), validation (a validation batch after global step ``step``), save (while the checkpoint of
    global step ``step`` is put together) or test (a test batch). ``rank``: only that global rank sends.
    ``times``: sent that many times in a row (Ctrl-C pressed twice)."""

    def __init__(self, signum: str, phase: str, step: int = 0, rank: int | None = None, times: int = 1):
        self.signum, self.phase, self.step, self.rank, self.sent = signal.Signals[signum], phase, step, rank, False
        self.times = times

    def _send(self, trainer, phase: str) -> None:
        if self.sent or phase != self.phase or self.rank not in (None, trainer.global_rank):
            return
        if phase != "test" and (trainer.global_step != self.step or trainer.sanity_checking):
            return
        self.sent = True
        for _ in range(self.times):
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._send(trainer, "train")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._send(trainer, "validation")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._send(trainer, "save")

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._send(trainer, "test")


class PauseForSignal(Callback):
    """Rank 0 reads the moment a test wants from ``<folder>/want``: ``train <step>`` (a training step
    from global step ``step`` on), ``validation``, ``save`` (a checkpoint save) or ``end`` (training has
    ended). There it replaces the file by ``<folder>/ready`` and waits, at most ``timeout`` s, for a signal."""

    def __init__(self, folder: str, timeout: float = 120):
        self.folder, self.timeout = Path(folder), timeout

    def _at(self, trainer, phase: str) -> None:
        want = self.folder / "want"
        if trainer.global_rank != 0 or trainer.sanity_checking or not want.is_file():
            return
        wanted, _, step = want.read_text().partition(" ")
        if wanted != phase or trainer.global_step < int(step or 0):
            return
        want.unlink()
        (self.folder / "ready.tmp").write_text(f"{phase} {trainer.global_step}")
        (self.folder / "ready.tmp").replace(self.folder / "ready")
        deadline = time.monotonic() + self.timeout
        while preemption.received() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._at(trainer, "train")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._at(trainer, "validation")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._at(trainer, "save")

    def on_fit_end(self, trainer, pl_module):
        self._at(trainer, "end")
