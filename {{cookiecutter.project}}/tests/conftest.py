import json
import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import train as train_script  # noqa: E402  (the entry point registers the config resolvers)


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


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Small MNIST-, Fashion-MNIST- and CIFAR-10-format datasets, made once per session."""
    from {{ cookiecutter.package_name }}.harness.synthetic import write_cifar10, write_mnist

    root = tmp_path_factory.mktemp("data")
    write_mnist(root, n_train=600, n_test=100)
    write_mnist(root, n_train=600, n_test=100, folder="FashionMNIST")
    write_cifar10(root, n_train=500, n_test=100)
    return root


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    """Compose the training config as ``python train.py <overrides>`` would, writing under tmp_path."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    f"paths.data_dir={data_dir}",
                    f"paths.log_dir={tmp_path}",
                    "trainer.accelerator=cpu",
                    *overrides,
                ],
            )
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir or tmp_path / "run")
        return cfg

    return make


@pytest.fixture
def train():
    return train_script.train
