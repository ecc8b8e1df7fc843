from ..harness.in_memory import DatasetNotFoundError, InMemoryDataModule, TensorBatchDataset
from .digits import DigitsDataModule
from .vision import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "TensorBatchDataset",
]
