"""Images in class folders, read from disk by worker processes: torchvision's ``ImageFolder`` as a DataModule.

The pattern for any data read from files. ``__init__`` keeps the settings (plain values from the
config); ``setup`` lists the files, which is cheap and done by every process; the Dataset reads
and transforms one example at a time in the DataLoader's worker processes, which then batch them.
What the data tells the model (image shape, classes) is in ``model_kwargs``. The preprocessing
lives here, in ``transform``, so evaluating and predicting (``evaluate.py``) apply exactly what
training applied.

Layouts of ``root``:

- ``root/<class>/<image>``: one tree; validation and test are seeded fractions of it.
- ``root/train/<class>/<image>``, with ``root/val/`` and ``root/test/`` where present (each a
  seeded fraction of ``train/`` where not). The training folder's classes number them all.
"""

import copy
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes
from torchvision.transforms import v2

from ..harness.in_memory import seeded_split
from ..harness.sampling import EpochShuffle, loader_generator

SPLITS = ("val", "test")


class ImageFolderDataModule(pl.LightningDataModule):
    def __init__(
        self,
        root: str,
        image_size: Sequence[int] = (64, 64),
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        augment: bool = False,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        drop_last: bool = False,
        predict_path: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if len(mean) not in (1, 3) or len(std) != len(mean):
            raise ValueError(
                f"mean={list(mean)}, std={list(std)}: give one value per channel, 3 for colour images or 1 to read "
                "them as greyscale, the same number for both."
            )
        self.root = Path(root)
        self.datasets: dict[str, Dataset] = {}
        self._classes: list[str] | None = None

    @property
    def train_root(self) -> Path:
        return self.root / "train" if (self.root / "train").is_dir() else self.root

    @property
    def classes(self) -> list[str]:
        """The class folders of the training tree, sorted: class ``i`` is ``classes[i]``, as in ImageFolder."""
        if self._classes is None:
            if not self.root.is_dir():
                raise FileNotFoundError(
                    f"data.root={self.root}: no such folder. Point data.root at a folder of class folders "
                    "(root/<class>/<image>), or of train/, val/ and test/ folders that hold class folders."
                )
            self._classes = find_classes(self.train_root)[0]
        return self._classes

    @property
    def model_kwargs(self) -> dict:
        """What the data tells the model (see harness/contract.py)."""
        shape = [len(self.hparams.mean), *self.hparams.image_size]
        return {"input_shape": shape, "num_classes": len(self.classes), "classes": self.classes}

    def transform(self, train: bool):
        """File to normalized tensor; in training, with random crops and flips when ``augment`` is set."""
        size = list(self.hparams.image_size)
        if train and self.hparams.augment:
            geometry = [v2.RandomResizedCrop(size, scale=(0.5, 1.0)), v2.RandomHorizontalFlip()]
        else:
            geometry = [v2.Resize(size)]
        grey = [v2.Grayscale(num_output_channels=1)] if len(self.hparams.mean) == 1 else []
        return v2.Compose(
            [
                v2.ToImage(),
                *grey,
                *geometry,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(self.hparams.mean), list(self.hparams.std)),
            ]
        )

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self.datasets["predict"] = ImageFiles(self.hparams.predict_path, self.transform(train=False))
            return
        if "train" in self.datasets:
            return
        tree = ClassFolders(self.train_root, self.classes, self.transform(train=True))
        evaluated = copy.copy(tree)  # the same files, read without augmentation
        evaluated.transform = self.transform(train=False)
        own = [split for split in SPLITS if self.train_root != self.root and (self.root / split).is_dir()]
        drawn = [split for split in SPLITS if split not in own]
        # A seed of its own, so that changing ``seed`` for a new initialisation keeps the held-out images.
        fractions = [self.hparams[f"{split}_fraction"] for split in drawn]
        *held_out, train_index = seeded_split(len(tree), fractions, self.hparams.split_seed)
        self.datasets = {"train": Subset(tree, train_index.tolist())}
        for split, index in zip(drawn, held_out, strict=True):
            self.datasets[split] = Subset(evaluated, index.tolist())
        for split in own:
            self.datasets[split] = ClassFolders(self.root / split, self.classes, self.transform(train=False))

    def num_workers(self) -> int:
        """``num_workers``, or where it is null Lightning's suggestion: this process's CPUs / processes per node - 1."""
        from lightning_fabric.utilities.data import suggested_max_num_workers

        if self.hparams.num_workers is not None:
            return self.hparams.num_workers
        return suggested_max_num_workers(self.trainer.num_devices if self.trainer is not None else 1)

    def _loader(self, split: str, **batching) -> DataLoader:
        workers = self.num_workers()
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            self.datasets[split],
            **batching,
            num_workers=workers,
            # Workers that live across epochs: no new processes, no files indexed again, each epoch.
            persistent_workers=workers > 0,
            pin_memory=self.hparams.pin_memory and on_gpu,
            generator=loader_generator(),
        )

    def train_dataloader(self) -> DataLoader:
        # The same order in a resumed run as in an uninterrupted one (harness/sampling.py).
        sampler = EpochShuffle(self.datasets["train"])
        batch_size, drop_last = self.hparams.batch_size, self.hparams.drop_last
        return self._loader("train", batch_size=batch_size, sampler=sampler, drop_last=drop_last)

    def _evaluation_loader(self, split: str) -> DataLoader:
        # In order; with several processes the harness shards it so that each image is evaluated once.
        return self._loader(split, batch_size=self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._evaluation_loader("predict")


class ClassFolders(ImageFolder):
    """An ``ImageFolder`` whose classes are numbered as given, so that val/ and test/ agree with train/."""

    def __init__(self, root: Path, classes: list[str], transform):
        self.given_classes = list(classes)
        super().__init__(str(root), transform=transform, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        if unknown := sorted(set(find_classes(directory)[0]) - set(self.given_classes)):
            raise ValueError(
                f"{directory} has class folders {unknown} that the training folder lacks; every class needs "
                "training images."
            )
        return self.given_classes, {name: index for index, name in enumerate(self.given_classes)}


class ImageFiles(Dataset):
    """The images under a folder (or one image file), sorted; items are 1-tuples: predict batches have no targets.

    ``names`` (paths under the folder) label the rows of the predictions file.
    """

    def __init__(self, path: str | None, transform):
        found = Path(path) if path is not None else None
        if found is None or not found.exists():
            raise FileNotFoundError(f"predict_path={path}: give a folder of images, or one image file, to predict on.")
        images = (file for file in found.rglob("*") if file.suffix.lower() in IMG_EXTENSIONS)
        self.files = [found] if found.is_file() else sorted(images)
        if not self.files:
            raise FileNotFoundError(f"predict_path={path}: no images ({', '.join(IMG_EXTENSIONS)}) in that folder.")
        self.names = [str(file.relative_to(found)) if found.is_dir() else file.name for file in self.files]
        self.transform, self.load = transform, default_loader

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        return (self.transform(self.load(self.files[index])),)
