"""Write small datasets in the MNIST (IDX), CIFAR-10 (pickled batches) and ImageFolder (PNG files) formats.

For tests and benchmarks on machines without internet: the data modules read these
files exactly as they read the real ones. Each class gets its own mean image plus
noise, so that models can learn something from them.
"""

import pickle
from pathlib import Path

import numpy as np


def _images(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, size=n)
    prototypes = rng.integers(0, 256, size=(10, *shape))
    noise = rng.normal(0, 40, size=(n, *shape))
    return np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(data_dir: str | Path, n_train: int = 60000, n_test: int = 10000, folder: str = "MNIST", seed: int = 0):
    """MNIST layout under ``data_dir/<folder>/raw``; ``folder="FashionMNIST"`` for Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    raw = Path(data_dir) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _images(n, (28, 28), rng)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar10(data_dir: str | Path, n_train: int = 50000, n_test: int = 10000, seed: int = 0):
    """CIFAR-10 python layout under ``data_dir/cifar-10-batches-py``."""
    rng = np.random.default_rng(seed)
    folder = Path(data_dir) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {f"data_batch_{i}": n_train // 5 for i in range(1, 6)} | {"test_batch": n_test}
    for name, n in splits.items():
        images, labels = _images(n, (3, 32, 32), rng)
        with open(folder / name, "wb") as file:
            pickle.dump({b"data": images.reshape(n, -1), b"labels": labels.tolist()}, file)
    return folder


def write_image_folder(
    root: str | Path,
    n_per_class: int = 20,
    num_classes: int = 3,
    size: tuple[int, int] = (16, 16),
    seed: int = 0,
    part: int = 0,
) -> Path:
    """RGB PNG files in ``root/class_<k>/<n>.png``. The classes' mean images follow ``seed``; the noise follows
    ``seed`` and ``part``, so that ``root/train`` and ``root/val`` written with parts 0 and 1 share their classes."""
    from PIL import Image

    prototypes = np.random.default_rng(seed).integers(0, 256, size=(num_classes, *size, 3))
    rng = np.random.default_rng([seed, part])
    for label in range(num_classes):
        folder = Path(root) / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        noise = rng.normal(0, 40, size=(n_per_class, *size, 3))
        for index, image in enumerate(np.clip(prototypes[label] + noise, 0, 255).astype(np.uint8)):
            Image.fromarray(image).save(folder / f"{index}.png")
    return Path(root)
