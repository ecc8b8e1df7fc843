from ..harness.in_memory import DatasetNotFoundError, InMemoryDataModule, TensorBatchDataset
from .digits import DigitsDataModule
from .image_folder import ImageFolderDataModule
from .text import PythonDocsDataModule
from .vision import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "PythonDocsDataModule",
    "TensorBatchDataset",
]
