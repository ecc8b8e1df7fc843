"""The contract (harness/contract.py): plain Lightning classes, plain hyperparameters, what the data tells the model."""

import io

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.harness import contract


class Features(pl.LightningDataModule):
    """Offers two things; the models below take one of them, or none."""

    def __init__(self, mean: list, layout: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model_kwargs = {"num_features": 3, "vocabulary": ("a", "b")}


class Regressor(pl.LightningModule):
    def __init__(self, num_features: int, widths: list, scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(num_features, 1)


class Plain(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)


class HoldsAFunction(pl.LightningModule):
    def __init__(self, activation):
        super().__init__()
        self.save_hyperparameters()


class NotLightning(torch.nn.Module):
    def __init__(self, num_features: int):
        super().__init__()


def config(model: dict, data: dict | None = None):
    data = data or {"_target_": "test_contract.Features", "mean": [0.5, 0.25], "layout": {"a": [1, 2]}}
    return OmegaConf.create({"model": model, "data": data})


def test_config_lists_and_dicts_arrive_as_plain_python_and_load_weights_only():
    datamodule, model = contract.build(config({"_target_": "test_contract.Regressor", "widths": [8, 4]}))
    assert type(datamodule.hparams["mean"]) is list and type(datamodule.hparams["layout"]["a"]) is list
    assert type(model.hparams["widths"]) is list
    for hparams in (datamodule.hparams, model.hparams):
        buffer = io.BytesIO()
        torch.save(dict(hparams), buffer)
        buffer.seek(0)
        assert torch.load(buffer, weights_only=True) == dict(hparams)


def test_the_data_tells_the_model_only_what_both_declare():
    _, model = contract.build(config({"_target_": "test_contract.Regressor", "widths": []}))
    assert model.hparams["num_features"] == 3 and "vocabulary" not in model.hparams
    # A value in the config wins over the data's.
    _, model = contract.build(config({"_target_": "test_contract.Regressor", "widths": [], "num_features": 5}))
    assert model.layer.in_features == 5
    # A model that takes nothing from the data is built as it is.
    _, model = contract.build(config({"_target_": "test_contract.Plain"}))
    assert isinstance(model, Plain)


def test_a_value_that_checkpoints_cannot_hold_fails_before_training_naming_it():
    function = {"_target_": "math.cos", "_partial_": True}
    with pytest.raises(contract.ContractError, match=r"model argument 'activation' .*save_hyperparameters\(ignore="):
        contract.build(config({"_target_": "test_contract.HoldsAFunction", "activation": function}))


def test_a_target_that_is_not_a_lightning_module_is_refused():
    with pytest.raises(contract.ContractError, match=r"model._target_=test_contract.NotLightning .*LightningModule"):
        contract.build(config({"_target_": "test_contract.NotLightning"}))
