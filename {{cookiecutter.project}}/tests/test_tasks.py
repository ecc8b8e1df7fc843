"""Tasks other than classification: a regression (tests/regression.py) trains, tests and predicts through the harness,
and the callbacks that only fit classifiers say once that they are off."""

import csv
import logging

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

import evaluate
from {{ cookiecutter.package_name }}.harness.callbacks import ValidationImages

from conftest import summary

REGRESSION = {
    "model": {"_target_": "regression.LinearRegression"},
    "data": {"_target_": "regression.LinearData", "num_features": 4, "predict_path": None},
}


def test_regression_trains_tests_and_predicts(make_cfg, train, tmp_path, caplog):
    cfg = make_cfg("monitor.metric=val/mse", "trainer.max_epochs=4", "logger=many")
    with open_dict(cfg):
        cfg.model, cfg.data = REGRESSION["model"], REGRESSION["data"]
    with caplog.at_level(logging.INFO):
        train(cfg)
    run_dir = tmp_path / "run"
    record = summary(run_dir)
    assert record["status"] == "completed" and "bookkeeping_errors" not in record
    assert record["monitor"]["metric"] == "val/mse" and record["monitor"]["best"] <= record["metrics"]["val/mse"]
    assert {"val/mse", "test/mse"} <= record["metrics"].keys()
    off = [r.getMessage() for r in caplog.records if "validation_images is off" in r.getMessage()]
    assert off == [
        "Callback validation_images is off: neither the model nor the data declares num_classes (it draws confusion "
        "matrices of classifiers)."
    ]

    data = instantiate(REGRESSION["data"])
    data.setup("test")
    features, targets = data.splits["test"].tensors
    np.save(tmp_path / "test.npy", features.numpy())
    written = evaluate.main([str(run_dir), f"predict={tmp_path / 'test.npy'}"])
    with written.open(newline="") as file:
        predicted = torch.tensor([float(row["prediction"]) for row in csv.DictReader(file)])
    mse = torch.mean((predicted - targets) ** 2).item()
    assert mse == pytest.approx(record["metrics"]["test/mse"], rel=1e-5)


IMAGES, LABELS = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize(
    ("outputs", "batch", "reason"),
    [
        (None, (IMAGES, LABELS), "validation_step returns no {'preds': predicted classes}"),
        ({"preds": LABELS}, (IMAGES,), "validation batches are not (inputs, class labels)"),
        ({"preds": LABELS.float()}, (IMAGES, LABELS.float()), "the labels are not one class index per example"),
    ],
    ids=["no preds", "no labels", "real-valued targets"],
)
def test_validation_images_checks_once_whether_it_applies(outputs, batch, reason, caplog):
    callback, trainer = ValidationImages(), pl.Trainer(logger=False, accelerator="cpu")
    with caplog.at_level(logging.INFO):
        for batch_idx in range(3):
            callback.on_validation_batch_end(trainer, None, outputs, batch, batch_idx)
    assert callback.applies is False
    assert [record.getMessage() for record in caplog.records if "validation_images" in record.getMessage()] == [
        f"Callback validation_images is off: {reason} (it draws confusion matrices of classifiers)."
    ]
