"""Optuna searches: one study per experiment, its own parameters, and no mixing of objectives."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONFIGS, ROOT, TINY, subprocess_env

DEFAULT_SPACE = ["model.optimizer.lr", "model.optimizer.weight_decay", "model.net.dropout", "data.batch_size"]


def search_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", ["hparams_search=optuna", *overrides], return_hydra_config=True)


def searched_keys(cfg) -> list[str]:
    return [override.partition("=")[0] for override in cfg.hydra.sweeper.params]


def search(project: Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", "hparams_search=optuna", *overrides, *TINY]
    env = subprocess_env(tmp_path / "logs")
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_each_experiment_gets_its_own_study_and_folder():
    names = {
        (): "train-mlp-digits-val_loss",
        ("experiment=mnist_mlp",): "train-mlp-mnist-val_loss",
        ("monitor.metric=val/acc", "monitor.mode=max"): "train-mlp-digits-val_acc",
        ("task_name=ablation",): "ablation-mlp-digits-val_loss",
        ("experiment=cifar10_cnn",): "train-cnn-cifar10-val_loss",
    }
    folders = set()
    for overrides, name in names.items():
        cfg = search_config(*overrides)
        assert cfg.hydra.sweeper.study_name == name
        assert Path(cfg.hydra.sweep.dir).name == name
        folders.add(cfg.hydra.sweep.dir)
    assert len(folders) == len(names)
    assert search_config("hydra.sweeper.study_name=mine").hydra.sweep.dir.endswith("/searches/mine")


def test_an_experiment_replaces_the_search_space_and_the_command_line_wins():
    assert searched_keys(search_config()) == DEFAULT_SPACE
    assert searched_keys(search_config("experiment=cifar10_cnn")) == [
        "model.optimizer.lr",
        "model.optimizer.weight_decay",
        "data.batch_size",
    ]
    assert searched_keys(search_config("search_space=[]")) == []


def test_a_search_refuses_parameters_its_model_does_not_have(tmp_path):
    refused = search(ROOT, tmp_path, "model=cnn", "hydra.sweeper.n_trials=1")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "hparams_search: model.net.dropout is not in this config (model=cnn, data=digits). Search this model's own "
        "parameters: search_space=[...] in its experiment config, or 'search_space=[]' and sweep overrides on the "
        "command line."
    )
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_an_experiment_written_elsewhere_searches_its_own_parameters(tmp_path):
    """A user's experiment with its own search space: its trials search that, and nothing else."""
    import optuna

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "train.py", project)
    shutil.copytree(ROOT / "configs", project / "configs")
    (project / "configs" / "experiment" / "lr_only.yaml").write_text(
        "# @package _global_\n"
        "search_space:\n"
        "  - model.optimizer.lr=tag(log, interval(1e-3, 1e-1))\n"
        "  - model/optimizer=choice(adam, sgd)\n"
    )
    done = search(project, tmp_path, "experiment=lr_only", "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]

    search_dir = tmp_path / "logs" / "train" / "searches" / "train-mlp-digits-val_loss"
    study = optuna.load_study(study_name=search_dir.name, storage=f"sqlite:///{search_dir / 'optuna.db'}")
    assert [sorted(trial.params) for trial in study.trials] == [["model.optimizer.lr", "model/optimizer"]] * 2
    for trial in study.trials:
        overrides = OmegaConf.load(search_dir / str(trial.number) / ".hydra" / "overrides.yaml")
        assert f"model/optimizer={trial.params['model/optimizer']}" in overrides
        assert not any(override.startswith(tuple(DEFAULT_SPACE[1:])) for override in overrides)


@pytest.mark.slow
def test_a_study_refuses_another_metric_or_direction(tmp_path):
    import optuna

    first = search(ROOT, tmp_path, "hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=1")
    assert first.returncode == 0, first.stderr[-3000:]
    for other in (["monitor.metric=val/acc", "monitor.mode=max"], ["monitor.mode=max"]):
        refused = search(ROOT, tmp_path, "hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=2", *other)
        assert refused.returncode == 1
        metric = other[0].partition("=")[2] if len(other) == 2 else "val/loss"
        assert refused.stderr.strip().splitlines()[-1] == (
            f"hparams_search: study 'shared' ranks trials by val/loss (minimize), this search by {metric} "
            "(maximize). Use monitor.metric=val/loss with its mode, or start another study: "
            "hydra.sweeper.study_name=<new name>."
        )
    storage = f"sqlite:///{tmp_path / 'logs' / 'train' / 'searches' / 'shared' / 'optuna.db'}"
    assert len(optuna.load_study(study_name="shared", storage=storage).trials) == 1
