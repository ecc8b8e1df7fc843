"""A LightningDataModule for datasets that fit in memory as tensors.

Batches are rows picked by one ``index_select`` (``TensorBatchDataset.__getitems__``)
with the indices a tensor (``TensorBatchSampler``), instead of lists of samples stacked by
``collate``, yet they still flow through a DataLoader and a sampler, so Lightning can swap
in a DistributedSampler. Images stay ``uint8`` until they reach the device, where
``on_after_batch_transfer`` scales, normalizes and (for training) augments whole batches.
Images to predict (``predict_path``: a ``.npy`` array of raw images, as the dataset stores them)
take the same way, so they get the preprocessing that training had.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .sampling import EpochShuffle, TensorBatchSampler, loader_generator


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says where to put it."""


class TensorBatchDataset(Dataset):
    def __init__(self, *tensors: torch.Tensor):
        if len({len(t) for t in tensors}) != 1:
            raise ValueError("all tensors need the same length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        # index_select copies whole rows: on a CPU ~50x faster than t[index] for images.
        return tuple(t.index_select(0, index) for t in self.tensors)


def keep_batch(batch):
    """``collate_fn`` for TensorBatchDataset: the batch is already stacked."""
    return batch


def seeded_split(n: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Index sets of ``n`` items: one per fraction, the rest last; the same for every process."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [round(n * f) for f in fractions]
    return list(torch.split(order, [*sizes, n - sum(sizes)]))


class InMemoryDataModule(pl.LightningDataModule):
    """Subclasses set the class attributes and implement ``load`` (and ``prepare_data`` to download)."""

    input_shape: tuple[int, int, int]
    num_classes: int
    pixel_max: float = 255.0
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = False,
        prepare_data_per_node: bool = True,
        drop_last: bool = False,
        predict_path: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        # True: every node downloads into its own data_dir (node-local disk);
        # False: only global rank 0 does, for a data_dir shared by all nodes.
        self.prepare_data_per_node = prepare_data_per_node
        self.datasets: dict[str, TensorBatchDataset] = {}
        self._normalizations: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def model_kwargs(self) -> dict:
        """What the data tells the model (see harness/contract.py)."""
        return {"input_shape": self.input_shape, "num_classes": self.num_classes}

    def load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Return ``{"fit": (images, labels), "test": (images, labels)}``, images ``(N, C, H, W)``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self.datasets["predict"] = TensorBatchDataset(self.read_predict_images())
            return
        if "train" in self.datasets:
            return
        arrays = self.load()
        images, labels = arrays["fit"]
        # A seed of its own, so that changing ``seed`` for a new initialisation keeps the validation set.
        val_index, train_index = seeded_split(len(labels), [self.hparams.val_fraction], self.hparams.split_seed)
        self.datasets = {
            "train": TensorBatchDataset(images[train_index], labels[train_index]),
            "val": TensorBatchDataset(images[val_index], labels[val_index]),
            "test": TensorBatchDataset(*arrays["test"]),
        }

    def _loader(self, split: str, batching: dict) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            **batching,
            generator=loader_generator(),
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory and self._on_gpu(),
            persistent_workers=self.hparams.num_workers > 0,
            collate_fn=keep_batch,
        )

    def _evaluation_loader(self, split: str) -> DataLoader:
        # In order; with several processes the harness shards it so that each example is evaluated once.
        batch_size = self.hparams.eval_batch_size or self.hparams.batch_size
        return self._loader(split, {"batch_size": batch_size, "shuffle": False})

    def _on_gpu(self) -> bool:
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        # The same order in a resumed run as in an uninterrupted one (sampling.py). Only training drops
        # its last, smaller batch (drop_last): evaluation counts every example.
        sampler = EpochShuffle(self.datasets["train"])
        batches = TensorBatchSampler(sampler, batch_size=self.hparams.batch_size, drop_last=self.hparams.drop_last)
        return self._loader("train", {"batch_sampler": batches})

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._evaluation_loader("predict")

    def read_predict_images(self) -> torch.Tensor:
        """``predict_path``'s images, ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel) in the dataset's raw range."""
        path, shape = self.hparams.predict_path, tuple(self.input_shape)
        expected = f"raw images shaped (N, {', '.join(map(str, shape))}) with values in [0, {self.pixel_max:g}]"
        if path is None or Path(path).suffix != ".npy" or not Path(path).is_file():
            raise FileNotFoundError(
                f"predict_path={path}: {type(self).__name__} predicts on a .npy file of {expected}, as the dataset "
                "stores them (np.save)."
            )
        images = torch.from_numpy(np.load(path))
        if images.dim() == 3 and shape[0] == 1:
            images = images.unsqueeze(1)
        if tuple(images.shape[1:]) != shape:
            raise ValueError(f"predict_path={path} holds an array shaped {tuple(images.shape)}; it needs {expected}.")
        return images

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, *labels = batch  # no labels in predict batches
        scale, shift = self._normalization(images.device)
        # (images / pixel_max - mean) / std as a multiply and an add, on a fresh float copy. Not one
        # torch.addcmul: broadcast over channels, it took 3x (an MNIST batch) to 25x (a CIFAR batch of
        # 512) as long on a CPU. Crops and flips commute with it.
        images = images.to(torch.float32, copy=True).mul_(scale).add_(shift)
        if self.hparams.augment and self.trainer is not None and self.trainer.training:
            images = augment(images)
        return images, *(label.long() for label in labels)

    def _normalization(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Made once per device: copying new constants to the GPU at every step would wait for it.
        if device not in self._normalizations:
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            self._normalizations[device] = (1 / (self.pixel_max * std)).to(device), (-mean / std).to(device)
        return self._normalizations[device]


def augment(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop after padding, and random horizontal flip: per example, on the whole batch at once."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=images.device)
    rows = (torch.arange(h, device=images.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=images.device).view(1, 1, w) + dx).expand(n, h, w)
    flip = torch.rand(n, 1, 1, device=images.device) < 0.5
    cols = torch.where(flip, w - 1 - cols + 2 * dx, cols)  # mirror inside the crop window
    batch_index = torch.arange(n, device=images.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch_index, rows, cols].permute(0, 3, 1, 2)
