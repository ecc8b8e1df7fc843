"""MNIST, Fashion-MNIST and CIFAR-10 in their standard on-disk formats.

``prepare_data`` downloads (once per node, or once in all) with torchvision when
the files are missing; ``setup`` reads the files straight into tensors. Offline,
a missing dataset is a DatasetNotFoundError naming the folder and files to fill.
"""

import pickle
from pathlib import Path

import numpy as np
import torch

from ..harness.in_memory import DatasetNotFoundError, InMemoryDataModule


class _DownloadedDataModule(InMemoryDataModule):
    folder: str  # under data_dir, as torchvision lays it out
    files: tuple[str, ...]

    @property
    def dataset_dir(self) -> Path:
        return Path(self.hparams.data_dir) / self.folder

    def missing_files(self) -> list[str]:
        return [name for name in self.files if not (self.dataset_dir / name).is_file()]

    def download(self) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        if not self.missing_files():
            return
        try:
            self.download()
        except Exception as error:  # torchvision raises URLError, RuntimeError, OSError...
            raise DatasetNotFoundError(self._not_found(f"downloading failed: {error}")) from error
        if missing := self.missing_files():
            raise DatasetNotFoundError(self._not_found(f"still missing after download: {', '.join(missing)}"))

    def _not_found(self, reason: str) -> str:
        return (
            f"{type(self).__name__}: {reason}. Put the files {', '.join(self.files)} into {self.dataset_dir} "
            "(download them where there is internet), or point data.data_dir (or $DATA_DIR) at a folder that has "
            f"{self.folder}/. Offline, data=digits needs no download."
        )

    def setup(self, stage: str | None = None) -> None:
        # Predicting reads only predict_path.
        if stage != "predict" and (missing := self.missing_files()):
            raise DatasetNotFoundError(self._not_found(f"missing {', '.join(missing)}"))
        super().setup(stage)


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (the MNIST format): big-endian dims, then uint8 data."""
    raw = path.read_bytes()
    ndim = raw[3]
    shape = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy())


class MNISTDataModule(_DownloadedDataModule):
    input_shape = (1, 28, 28)
    num_classes = 10
    mean = (0.1307,)
    std = (0.3081,)
    folder = "MNIST/raw"
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def download(self) -> None:
        from torchvision.datasets import MNIST

        MNIST(self.hparams.data_dir, download=True)

    def load(self):
        def split(prefix: str):
            images = read_idx(self.dataset_dir / f"{prefix}-images-idx3-ubyte").unsqueeze(1)
            return images, read_idx(self.dataset_dir / f"{prefix}-labels-idx1-ubyte").long()

        return {"fit": split("train"), "test": split("t10k")}


class FashionMNISTDataModule(MNISTDataModule):
    mean = (0.2860,)
    std = (0.3530,)
    folder = "FashionMNIST/raw"

    def download(self) -> None:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(self.hparams.data_dir, download=True)


class CIFAR10DataModule(_DownloadedDataModule):
    input_shape = (3, 32, 32)
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    folder = "cifar-10-batches-py"
    files = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

    def download(self) -> None:
        from torchvision.datasets import CIFAR10

        CIFAR10(self.hparams.data_dir, download=True)

    def load(self):
        def split(names):
            images, labels = [], []
            for name in names:
                with open(self.dataset_dir / name, "rb") as file:
                    batch = pickle.load(file, encoding="bytes")
                images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(batch[b"labels"])
            return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)

        return {"fit": split(self.files[:5]), "test": split(self.files[5:])}
