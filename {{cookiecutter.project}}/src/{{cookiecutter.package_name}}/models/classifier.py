"""The LightningModule: a network, a loss, exact metrics and the optimizer setup."""

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy


def plain(value: Any) -> Any:
    """Hydra config nodes as plain Python values, so checkpoints load with ``weights_only=True``."""
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(item) for item in value]
    return value


class Classifier(pl.LightningModule):
    """Image classifier whose network, optimizer and scheduler come from config.

    ``net``, ``optimizer`` and ``scheduler`` are Hydra configs (the latter two with
    ``_partial_: true``); they are stored as plain hyperparameters and instantiated
    here, so ``Classifier.load_from_checkpoint(path)`` needs nothing else.
    ``scheduler`` holds the scheduler config under ``scheduler`` plus Lightning's
    scheduler keys (``interval``, ``frequency``, ``monitor``).
    """

    def __init__(
        self,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None = None,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        compile: bool = False,
    ):
        super().__init__()
        net, optimizer, scheduler, input_shape = plain(net), plain(optimizer), plain(scheduler), plain(input_shape)
        self.save_hyperparameters()
        self.net = instantiate(net, input_shape=input_shape, num_classes=num_classes)
        if compile:
            # In place, so that state_dict keys (and checkpoints) match the uncompiled network.
            self.net.compile()
        self.loss = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes)
        self.val_acc = MulticlassAccuracy(num_classes)
        self.test_acc = MulticlassAccuracy(num_classes)
        # Weighted by batch size, and summed exactly across processes at epoch end.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    @property
    def lr(self) -> float:
        """The optimizer's learning rate; Lightning's LR finder reads and sets it."""
        return self.hparams.optimizer["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hparams.optimizer["lr"] = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch, stage: str, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        loss_metric.update(self.loss(logits, y), weight=y.numel())
        acc_metric.update(logits, y)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_loss, self.val_acc)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_loss, self.test_acc)

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).argmax(dim=1)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        settings = dict(self.hparams.scheduler)
        scheduler = instantiate(settings.pop("scheduler"))(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **settings}}
