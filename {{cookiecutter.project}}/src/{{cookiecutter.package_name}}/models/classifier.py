"""The LightningModule: a network, a loss, exact metrics and the optimizer setup."""

from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .optimization import configure_optimizers


class Classifier(pl.LightningModule):
    """Image classifier whose network, optimizer and scheduler come from config.

    ``net``, ``optimizer`` and ``scheduler`` are Hydra configs (the latter two with
    ``_partial_: true``) that arrive as plain dicts; they are stored as hyperparameters and
    instantiated here, so ``Classifier.load_from_checkpoint(path)`` needs nothing else.
    ``input_shape``, ``num_classes`` and (where the data knows them) the class names ``classes``
    come from the data (its ``model_kwargs``).
    ``scheduler`` holds the scheduler config under ``scheduler`` plus Lightning's
    scheduler keys (``interval``, ``frequency``, ``monitor``).
    """

    def __init__(
        self,
        net: Mapping,
        optimizer: Mapping,
        input_shape: Sequence[int],
        num_classes: int,
        scheduler: Mapping | None = None,
        classes: Sequence[str] | None = None,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = instantiate(net, input_shape=input_shape, num_classes=num_classes)
        if compile:
            # In place, so that state_dict keys (and checkpoints) match the uncompiled network.
            self.net.compile()
        self.loss = nn.CrossEntropyLoss()
        self.channels_last = False  # set in setup()
        # Plain (micro) accuracy, without input checks: per-class averaging and the checks call
        # torch.bincount and torch.unique, which wait for the GPU; cross_entropy already rejects
        # labels out of range.
        self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes, average="micro", validate_args=False) for _ in range(2)
        )
        # Training loss and accuracy of the epoch, summed on the device (see training_step).
        self.train_loss_sum = torch.zeros(())
        self.train_correct = torch.zeros((), dtype=torch.long)
        self.train_count = 0
        # Weighted by batch size, and summed exactly across processes at epoch end. NaN is kept, not
        # dropped with a warning (a check that also waits for the GPU): a diverged model shows NaN.
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")

    @property
    def lr(self) -> float:
        """The optimizer's learning rate; Lightning's LR finder reads and sets it."""
        return self.hparams.optimizer["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hparams.optimizer["lr"] = float(value)

    def setup(self, stage: str) -> None:
        # Convolutions on (tensor-core) GPUs run fastest on NHWC memory; forward converts the batches.
        on_gpu = self.trainer.strategy.root_device.type == "cuda"
        self.channels_last = on_gpu and any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for augmented batches, already NHWC
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        # A few tensor ops, no host-device sync. Each self.log call runs much of Lightning's Python
        # (profiled: 15% of the MLP's step on a CPU), so the step loss is logged only at the steps
        # that Lightning writes to the loggers (every trainer.log_every_n_steps).
        with torch.no_grad():
            self.train_loss_sum.add_(loss, alpha=len(y))
            self.train_correct.add_((logits.argmax(dim=1) == y).sum())
        self.train_count += len(y)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss_sum = torch.zeros((), device=self.device)
        self.train_correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.train_count = 0

    def on_train_start(self) -> None:
        # A run resumed inside an epoch gets no on_train_epoch_start for it: it goes on from the checkpoint's totals.
        totals, self._resumed_totals = getattr(self, "_resumed_totals", None), None
        if totals is None or totals["epoch"] != self.current_epoch:
            return
        if len(totals["per_rank"]) != self.trainer.world_size:
            rank_zero_warn(
                f"Resuming mid-epoch on {self.trainer.world_size} processes from a checkpoint of "
                f"{len(totals['per_rank'])}: this epoch's train/loss_epoch and train/acc cover only its rest."
            )
            return
        loss_sum, correct, count = totals["per_rank"][self.global_rank]
        self.train_loss_sum = torch.tensor(loss_sum, dtype=torch.float32, device=self.device)
        self.train_correct = torch.tensor(int(correct), dtype=torch.long, device=self.device)
        self.train_count = int(count)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A checkpoint taken mid-epoch (every_n_train_steps, a SLURM requeue) keeps the epoch's training totals
        # of every process, so that the resumed epoch reports the same train/loss_epoch and train/acc.
        # Every process saves a checkpoint together, so the gather is safe here.
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if not 0 < batches < self.trainer.num_training_batches:
            return
        mine = torch.stack([self.train_loss_sum.double(), self.train_correct.double()])
        mine = torch.cat([mine, mine.new_tensor([self.train_count])])
        # float32 and int64 totals of this size are exact in float64.
        per_rank = self.all_gather(mine).reshape(-1, 3).tolist()
        checkpoint["train_epoch_totals"] = {"epoch": self.current_epoch, "per_rank": per_rank}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_totals = checkpoint.get("train_epoch_totals")

    def on_train_epoch_end(self) -> None:
        if self.train_count:
            # Every process sees equally many examples (DistributedSampler), so the mean of their
            # means (sync_dist) is the mean over all examples.
            self.log("train/loss_epoch", self.train_loss_sum / self.train_count, sync_dist=True)
            self.log("train/acc", self.train_correct / self.train_count, sync_dist=True)

    def _evaluate(self, batch, stage: str, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        # The batch's mean loss once per example: MeanMetric(nan_strategy="disable") replaces any weight by ones
        # (torchmetrics 1.9), which would give a small last batch the weight of a full one.
        loss_metric.update(self.loss(logits, y).expand(len(y)))
        acc_metric.update(logits, y)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)
        return logits

    def validation_step(self, batch, batch_idx):
        # The predictions feed callbacks such as ValidationImages (confusion matrix, sample grid).
        return {"preds": self._evaluate(batch, "val", self.val_loss, self.val_acc).argmax(dim=1)}

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_loss, self.test_acc)

    def predict_step(self, batch, batch_idx):
        """The predicted class of each example, its probability, and its name where the data named the classes."""
        probability, prediction = self(batch[0]).softmax(dim=1).max(dim=1)
        predicted = {"prediction": prediction, "probability": probability}
        if self.hparams.classes:
            predicted["class"] = [self.hparams.classes[index] for index in prediction.tolist()]
        return predicted

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.hparams.optimizer, self.hparams.scheduler, self.device)
