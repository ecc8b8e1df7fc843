"""scikit-learn's bundled 8x8 handwritten digits: 1797 images, no download, trains in seconds."""

import torch

from ..harness.in_memory import InMemoryDataModule, seeded_split


class DigitsDataModule(InMemoryDataModule):
    input_shape = (1, 8, 8)
    num_classes = 10
    pixel_max = 16.0
    mean = (0.305,)
    std = (0.375,)

    def __init__(self, *args, test_fraction: float = 0.2, **kwargs):
        # The base class's save_hyperparameters() records test_fraction too.
        super().__init__(*args, **kwargs)

    def load(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.uint8).unsqueeze(1)
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        # The set has no official test split: hold one out with the split seed.
        test_index, fit_index = seeded_split(len(labels), [self.hparams.test_fraction], self.hparams.split_seed + 1)
        return {"fit": (images[fit_index], labels[fit_index]), "test": (images[test_index], labels[test_index])}
