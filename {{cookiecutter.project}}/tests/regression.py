"""A regression task written as a user would: a plain LightningModule and LightningDataModule, nothing of ours.

Used as ``model._target_=regression.LinearRegression`` and ``data._target_=regression.LinearData``
(with ``tests/`` on ``sys.path``): targets are a fixed linear function of the features, plus noise.
"""

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanSquaredError

SPLITS = {"train": slice(0, 200), "val": slice(200, 251), "test": slice(251, 300)}


def examples(num_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """300 examples (features, target), the same every time."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, num_features, generator=generator)
    weights = torch.linspace(-1, 1, num_features)
    return features, features @ weights + 0.1 * torch.randn(300, generator=generator)


class LinearData(pl.LightningDataModule):
    def __init__(self, num_features: int = 5, batch_size: int = 32, predict_path: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model_kwargs = {"num_features": num_features}

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self.predict_set = TensorDataset(torch.from_numpy(np.load(self.hparams.predict_path)).float())
            return
        features, targets = examples(self.hparams.num_features)
        self.splits = {name: TensorDataset(features[rows], targets[rows]) for name, rows in SPLITS.items()}

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=self.hparams.batch_size)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=self.hparams.batch_size)

    def predict_dataloader(self):
        return DataLoader(self.predict_set, batch_size=self.hparams.batch_size)


class LinearRegression(pl.LightningModule):
    def __init__(self, num_features: int, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(num_features, 1)
        self.val_mse, self.test_mse = MeanSquaredError(), MeanSquaredError()

    def forward(self, features):
        return self.layer(features).squeeze(-1)

    def training_step(self, batch, batch_idx):
        features, targets = batch
        return torch.nn.functional.mse_loss(self(features), targets)

    def validation_step(self, batch, batch_idx):
        self.val_mse(self(batch[0]), batch[1])
        self.log("val/mse", self.val_mse)

    def test_step(self, batch, batch_idx):
        self.test_mse(self(batch[0]), batch[1])
        self.log("test/mse", self.test_mse)

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
