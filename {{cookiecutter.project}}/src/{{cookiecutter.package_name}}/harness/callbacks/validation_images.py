"""On validation end: a confusion matrix and a grid of sample predictions, as images in every logger that shows images.

For classifiers only: the callback checks once whether the task is one, and if not says why in
one log line and stays off. It needs ``num_classes`` (a model argument, or in the data's
``model_kwargs``), validation batches ``(inputs, class labels)`` and a ``validation_step`` that
returns its predicted classes as ``{"preds": ...}``; the grid also needs the inputs to be images.
Only every ``every_n_epochs``-th validation (epochs 0, n, 2n, ...) and only with a logger that takes
images; otherwise the callback costs nothing. The confusion matrix counts the whole validation set,
summed over all processes; global rank 0 draws and logs.
"""

import logging

import torch
from pytorch_lightning import Callback

from ..figures import log_figure, takes_images

log = logging.getLogger(__name__)


class ValidationImages(Callback):
    # Failures are reported and training goes on (callbacks/bookkeeping.py).
    bookkeeping = True

    def __init__(self, every_n_epochs: int = 5, num_samples: int = 32):
        if every_n_epochs < 1 or num_samples < 0:
            raise ValueError(f"every_n_epochs={every_n_epochs} must be >= 1 and num_samples={num_samples} >= 0")
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.num_classes: int | None = None
        # None until the first validation batch shows whether the task is classification.
        self.applies: bool | None = None
        self.images = False
        self._confusion = None
        self._samples = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.applies is not None:
            return
        offered = getattr(trainer.datamodule, "model_kwargs", None) or {}
        self.num_classes = pl_module.hparams.get("num_classes") or offered.get("num_classes")
        if not self.num_classes:
            self._switch_off(trainer, "neither the model nor the data declares num_classes")

    def _switch_off(self, trainer, reason: str) -> None:
        self.applies, self._confusion, self._samples = False, None, None
        if trainer.is_global_zero:
            log.info("Callback validation_images is off: %s (it draws confusion matrices of classifiers).", reason)

    def _check(self, trainer, outputs, batch) -> None:
        preds = outputs.get("preds") if isinstance(outputs, dict) else None
        if not isinstance(preds, torch.Tensor):
            return self._switch_off(trainer, "validation_step returns no {'preds': predicted classes}")
        if not (isinstance(batch, list | tuple) and len(batch) == 2 and isinstance(batch[1], torch.Tensor)):
            return self._switch_off(trainer, "validation batches are not (inputs, class labels)")
        inputs, targets = batch
        if targets.is_floating_point() or targets.shape != preds.shape or targets.dim() != 1:
            return self._switch_off(trainer, "the labels are not one class index per example")
        self.applies = True
        # (N, H, W) or (N, C, H, W) with grey or colour channels: something imshow can show.
        shape = inputs.shape if isinstance(inputs, torch.Tensor) else ()
        self.images = len(shape) == 3 or (len(shape) == 4 and shape[1] in (1, 3))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        self._confusion = self._samples = None
        due = trainer.current_epoch % self.every_n_epochs == 0
        if self.applies is False or trainer.sanity_checking or not due:
            return
        if not any(takes_images(logger) for logger in trainer.loggers):
            return
        # No input checks: they wait for the GPU at every batch.
        self._confusion = MulticlassConfusionMatrix(self.num_classes, validate_args=False).to(pl_module.device)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.applies is None:
            self._check(trainer, outputs, batch)
        if self._confusion is None or not self.applies:
            return
        images, targets = batch
        preds = outputs["preds"].detach()
        self._confusion.update(preds, targets)
        if self._samples is None and self.images and self.num_samples and trainer.is_global_zero:
            n = self.num_samples
            self._samples = (images[:n].detach(), preds[:n], targets[:n])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._confusion is None:
            return
        matrix = self._confusion.compute().cpu()  # every rank takes part in the sum
        self._confusion = None
        if not trainer.is_global_zero:
            return
        figures = {"val/confusion_matrix": confusion_figure(matrix)}
        if self._samples is not None:
            figures["val/predictions"] = samples_figure(*(t.cpu() for t in self._samples))
            self._samples = None
        for key, figure in figures.items():
            log_figure(trainer.loggers, key, figure, trainer.global_step)


def confusion_figure(matrix):
    """Counts with true classes as rows, predicted as columns; numbers written in for up to 20 classes."""
    from matplotlib.figure import Figure

    n = matrix.shape[0]
    size = min(2 + 0.5 * n, 12)
    # A Figure of its own, not pyplot's: no global backend or figure list to manage.
    figure = Figure(figsize=(size, size), dpi=80)
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    axes.set(xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n), title="validation confusion matrix")
    if n <= 20:
        threshold = matrix.max().item() / 2
        for (row, col), count in zip(matrix.nonzero().tolist(), matrix[matrix > 0].tolist(), strict=True):
            colour = "white" if count > threshold else "black"
            axes.text(col, row, int(count), ha="center", va="center", color=colour, fontsize=8)
    figure.tight_layout()
    return figure


def samples_figure(images, preds, targets):
    """The images in a grid, each labelled ``predicted (true)``: green when right, red when wrong."""
    import math

    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    columns = min(8, len(images))
    rows = math.ceil(len(images) / columns)
    height, width = images.shape[-2:]
    pad = max(2, round(0.35 * height))  # room above each image for its label
    # Normalised inputs back to [0, 1] per image, so that any dataset shows; one axes is much faster than many.
    low = images.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = images.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    grid = make_grid((images.float() - low) / (high - low).clamp_min(1e-8), nrow=columns, padding=pad, pad_value=1)
    figure = Figure(figsize=(1.2 * columns, 1.4 * rows), dpi=80)
    axes = figure.subplots()
    axes.imshow(grid.permute(1, 2, 0).numpy())
    axes.axis("off")
    for index, (pred, target) in enumerate(zip(preds.tolist(), targets.tolist(), strict=True)):
        row, column = divmod(index, columns)
        # Pixel centres are at integers: an image's top edge is half a pixel above its first row.
        x, y = pad + column * (width + pad) - 0.5, pad + row * (height + pad) - 0.5 - 0.1 * pad
        colour = "green" if pred == target else "red"
        axes.text(x, y, f"{pred} ({target})", color=colour, fontsize=8, va="bottom", fontweight="bold")
    figure.tight_layout()
    return figure
