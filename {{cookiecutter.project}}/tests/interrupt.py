"""Pieces that tests put into ``python train.py`` runs (``tests/`` on PYTHONPATH) to stop and resume them.

- ``StopAtStep``: ``+callbacks.stop._target_=interrupt.StopAtStep +callbacks.stop.step=30`` fails the run
  on every rank as the batch after optimizer step ``step`` starts, i.e. after the checkpoints of that step.
  With ``+callbacks.stop.save_as=<path>`` it first saves a checkpoint there with the next batch in
  flight, as Lightning's SLURM signal handler does with its requeue checkpoint (hpc_ckpt_<n>.ckpt).
- ``PlainShuffleDigits``: digits served the way most DataModules do it, a plain
  ``DataLoader(shuffle=True)``, recording its training batches as ``probe.ProbedDigits`` does.
"""

from probe import ProbedDigits
from pytorch_lightning import Callback
from torch.utils.data import DataLoader

from {{ cookiecutter.package_name }}.harness.in_memory import keep_batch


class Interrupted(RuntimeError):
    """The run was stopped on purpose, mid-epoch."""


class StopAtStep(Callback):
    def __init__(self, step: int, save_as: str | None = None):
        self.step, self.save_as = step, save_as

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if self.save_as:
                trainer.save_checkpoint(self.save_as)
            raise Interrupted(f"stopped after step {self.step}, at batch {batch_idx} of epoch {trainer.current_epoch}")


class PlainShuffleDigits(ProbedDigits):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["train"], batch_size=self.hparams.batch_size, shuffle=True, collate_fn=keep_batch
        )
