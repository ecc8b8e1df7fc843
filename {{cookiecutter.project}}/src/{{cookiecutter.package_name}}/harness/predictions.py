"""Predictions to a CSV file, one row per example, written batch by batch while ``trainer.predict`` runs.

``predict_step`` returns for each batch a tensor, or a dict of tensors and lists, holding one value
(or one vector, written as one column per entry) per example. Each row starts with the example's
index in the predict dataset and, where that dataset names its examples in ``names`` (image files,
say), its name. Written by one process (``evaluate.py`` predicts on one device).
"""

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    def __init__(self, path: str | Path):
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self._file = self._rows = None
        self._written = 0

    def on_predict_start(self, trainer, pl_module) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._rows, self._written = None, 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction: Any, batch_indices: Sequence[int] | None, batch, batch_idx, dataloader_idx
    ) -> None:
        columns = prediction_columns(prediction)
        size = len(next(iter(columns.values())))
        # No indices from Lightning for an iterable dataset: count the examples instead.
        indices = list(batch_indices) if batch_indices is not None else list(range(self._written, self._written + size))
        names = getattr(predict_dataset(trainer, dataloader_idx), "names", None)
        front = {"index": indices, **({"input": [names[index] for index in indices]} if names is not None else {})}
        columns = {**front, **columns}
        if any(len(values) != len(indices) for values in columns.values()):
            sizes = {key: len(values) for key, values in columns.items()}
            raise ValueError(
                f"predict_step returned {sizes} values for a batch of {len(indices)} examples: return one value (or "
                "one vector) per example, as a tensor or a dict of tensors and lists."
            )
        if self._rows is None:
            self._rows = csv.writer(self._file)
            self._rows.writerow(columns)
        self._rows.writerows(zip(*columns.values(), strict=True))
        self._written += len(indices)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def prediction_columns(prediction: Any) -> dict[str, list]:
    """Columns of one batch's predictions: a 1-d tensor or list is one column, an ``(N, k)`` tensor k of them."""
    import torch

    named = prediction if isinstance(prediction, Mapping) else {"prediction": prediction}
    columns: dict[str, list] = {}
    for key, values in named.items():
        if not isinstance(values, torch.Tensor):
            columns[key] = list(values)
            continue
        values = values.detach().cpu()
        values = values.float() if values.is_floating_point() else values  # bf16 and fp16 as plain floats
        if values.dim() == 1 or (values.dim() == 2 and values.shape[1] == 1):
            columns[key] = values.flatten().tolist()
        elif values.dim() == 2:
            for column, entries in enumerate(values.T.tolist()):
                columns[f"{key}_{column}"] = entries
        else:
            raise ValueError(
                f"predict_step returned {key!r} shaped {tuple(values.shape)}: the CSV file takes one value or one "
                "vector per example. Return a smaller summary, or write a BasePredictionWriter of your own."
            )
    return columns


def predict_dataset(trainer, dataloader_idx: int):
    loaders = trainer.predict_dataloaders
    loader = loaders[dataloader_idx] if isinstance(loaders, Sequence) else loaders
    return getattr(loader, "dataset", None)
