import inspect
import json
import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import train as train_script  # noqa: E402  (the entry point registers the config resolvers)

# A few batches of one epoch: each job takes a second or two once torch is imported.
TINY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
)


def summary(run_dir: Path) -> dict:
    """A run's summary.json."""
    return json.loads((run_dir / "summary.json").read_text())


def subprocess_env(log_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of ``python train.py`` started by a test: the package and tests/ importable,
    runs under ``log_dir``, W&B offline."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "LOG_DIR": str(log_dir), "WANDB_MODE": "offline", **extra}


def group_options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIGS / group).glob("*.yaml"))


def monitor_of_pairing(model: str, data: str) -> list[str]:
    """The ``monitor`` overrides of the experiment that trains ``model`` on ``data``, if one does.

    A model of another task logs other metrics (a regression's ``val/mse``, not ``val/loss``); its
    experiment says which one to monitor, and the run refuses a monitored metric the model never logs.
    """
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")):
        experiment = OmegaConf.load(path)
        chosen = {
            key.removeprefix("override /"): value
            for entry in experiment.get("defaults", [])
            if isinstance(entry, DictConfig)
            for key, value in entry.items()
        }
        if chosen.get("model") == model and chosen.get("data") == data and "monitor" in experiment:
            return [f"monitor.{key}={value}" for key, value in experiment.monitor.items()]
    return []


def misfit(cfg: DictConfig) -> str | None:
    """Why ``cfg.model`` cannot train on ``cfg.data``, or None where it can.

    Not every model suits every data (a classifier, a regression): a model trains on the data whose
    ``model_kwargs`` give it at least one argument, and every argument it requires that its config
    leaves unset. A model that takes nothing from any data is tested through an experiment.
    """
    from hydra.utils import get_class, instantiate

    offered = set(getattr(instantiate(cfg.data), "model_kwargs", None) or {})
    parameters = list(inspect.signature(get_class(cfg.model._target_).__init__).parameters.values())[1:]
    takes = {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    required = {p.name for p in parameters if p.default is p.empty and p.name in takes} - set(cfg.model)
    if missing := sorted(required - offered):
        return f"{cfg.data._target_} does not give {cfg.model._target_} its {', '.join(missing)}"
    if not takes & offered:
        return f"{cfg.model._target_} takes nothing that {cfg.data._target_} gives"
    return None


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Small MNIST-, Fashion-MNIST-, CIFAR-10- and ImageFolder-format datasets, made once per session."""
    from {{ cookiecutter.package_name }}.harness.synthetic import write_cifar10, write_image_folder, write_mnist

    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=600, n_test=100)
    write_mnist(root, n_train=600, n_test=100, folder="FashionMNIST")
    write_cifar10(root, n_train=500, n_test=100)
    write_image_folder(root / "images", n_per_class=20, num_classes=3)  # data=image_folder's default root
    return root


def compose_cfg(*overrides: str, data_dir: Path, log_dir: Path, output_dir: Path) -> DictConfig:
    """The training config as ``python train.py <overrides>`` would compose it, on the CPU, running in output_dir."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"paths.data_dir={data_dir}", f"paths.log_dir={log_dir}", "trainer.accelerator=cpu", *overrides],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    """Compose the training config as ``python train.py <overrides>`` would, writing under tmp_path."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_cfg(*overrides, data_dir=data_dir, log_dir=tmp_path, output_dir=output_dir or tmp_path / "run")

    return make


@pytest.fixture
def train():
    return train_script.train
