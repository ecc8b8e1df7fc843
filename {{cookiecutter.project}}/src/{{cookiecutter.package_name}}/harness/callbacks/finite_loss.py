"""Stop at the first NaN or infinite training loss, before a checkpoint can save the broken weights.

``EarlyStopping(check_finite=True)`` only sees the monitored validation metric, and Lightning's
``detect_anomaly`` slows every backward pass. On an accelerator each step folds ``isfinite(loss)``
into a tensor on the loss's device (no host-device sync); the host reads it every
``check_every_n_steps`` steps, before each validation and before each checkpoint. On a CPU,
reading the loss costs less than those kernels, so every step is checked at once
(``read_every_step``: null picks by device, true or false forces either way).
"""

import math

import pytorch_lightning as pl
import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to try."""


class FiniteLossGuard(pl.Callback):
    NONE_YET = 2**62

    def __init__(self, check_every_n_steps: int = 50, read_every_step: bool | None = None):
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self.read_every_step = read_every_step
        # Global step of the first non-finite loss, NONE_YET while all are finite.
        self._first_bad: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        read_now = loss.device.type == "cpu" if self.read_every_step is None else self.read_every_step
        if read_now:
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(self._message(trainer, trainer.global_step))
            return
        # global_step has already counted this batch's optimizer step.
        step = trainer.global_step
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), self.NONE_YET, dtype=torch.long, device=loss.device)
        # Three small kernels, queued without waiting for the GPU.
        this_step = torch.where(torch.isfinite(loss.detach()), self.NONE_YET, step)
        self._first_bad = torch.minimum(self._first_bad, this_step)
        if step % self.check_every_n_steps == 0:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)

    def check(self, trainer) -> None:
        first_bad = self.NONE_YET if self._first_bad is None else int(self._first_bad)
        if first_bad != self.NONE_YET:
            raise NonFiniteLossError(self._message(trainer, first_bad))

    def _message(self, trainer, step: int) -> str:
        # Every epoch ends with a check, so the step belongs to the current epoch.
        epoch = trainer.current_epoch
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", ""
        )
        kept = f"The last good checkpoint is {last}" if last else "No checkpoint was saved before it"
        return (
            f"The training loss became NaN or infinite at global step {step} (epoch {epoch}); training stopped "
            f"there and no checkpoint holds the weights after it. {kept}. Try a lower learning rate "
            "(model.optimizer.lr), gradient clipping (trainer.gradient_clip_val=1.0), full precision "
            "(trainer.precision=32-true) if you train in 16-bit, and check the data for NaN or Inf values; "
            "resume from the checkpoint with ckpt_path=<its path>."
        )
