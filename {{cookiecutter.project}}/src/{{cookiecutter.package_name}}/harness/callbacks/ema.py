"""Exponential moving average (EMA) of the weights: Lightning's EMAWeightAveraging, with two fixes.

Lightning keeps an averaged copy of the module (torch's ``AveragedModel``) and, after every
``update_every_n_steps`` optimizer steps from ``update_starting_at_step`` on, moves it towards the
weights: ``average = decay * average + (1 - decay) * weights``. Validation runs on the average
(swapped in and back out), every checkpoint holds the average as its ``state_dict`` (so
``load_from_checkpoint`` gives the averaged model) and the live weights and the average's state
beside it, for resuming; after training the module keeps the average.

What this subclass changes:

- Testing a checkpoint after ``fit``, in the same process (``test=true``): Lightning's callback
  would load the checkpoint's live weights over its averaged ``state_dict``, as when resuming, so
  the test would not see the average. Outside ``fit`` the checkpoint's ``state_dict`` stays.
- Before the first update (``update_starting_at_step``) there is no average: Lightning's would
  validate, save and finally keep the weights the run started with; here validation, checkpoints
  and the final model use the live weights until the average exists.
"""

from typing import Any

from pytorch_lightning.callbacks import EMAWeightAveraging as LightningEMA
from torch.optim.swa_utils import get_ema_multi_avg_fn


class EMAWeightAveraging(LightningEMA):
    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        device: str | None = None,
        use_buffers: bool = True,
    ):
        super().__init__(
            device=device,
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )
        # The same average, with one fused lerp over all tensors instead of torch's loop over them
        # (half the time per update for the default MLP on a CPU). torch takes one of the two only.
        del self._kwargs["avg_fn"]
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay)
        self._swapped = False

    def has_average(self) -> bool:
        """Whether the average has been updated at least once (before that it holds the starting weights)."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._swapped = self.has_average()
        if self._swapped:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._swapped:
            super().on_validation_epoch_end(trainer, pl_module)
            self._swapped = False

    def on_train_end(self, trainer, pl_module) -> None:
        if self.has_average():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Without an average yet, the checkpoint is one of the live weights, as without EMA.
        if self.has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Resuming a fit restores the average and the live weights; anything else keeps the averaged state_dict.
        if trainer.state.fn == "fit" and "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
