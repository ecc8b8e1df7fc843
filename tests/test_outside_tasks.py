"""Tasks brought from outside into a fresh bake, with no template file edited, the way the baked README
("Your own model and data") tells a new user to add them.

- A regression: a LightningModule and a DataModule for scikit-learn's diabetes data (MSE,
  ``monitor.metric=val/mse``), their configs and an experiment that pairs them, written into
  ``src/<package>/`` and ``configs/``.
- An ImageFolder tree of generated PNG files, read by the shipped ``data=image_folder`` with two
  worker processes.

Each runs ``train.py``, a ``-m`` grid, a 3-trial Optuna search, DDP over 2 CPU processes, a run
resumed with ``ckpt_path``, ``evaluate.py`` on the test split and a prediction. Tiny data and few
steps: the commands, not the models, are under test.
"""

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import bake, run

pytestmark = pytest.mark.slow

PACKAGE = "outside_lab"

REGRESSOR = '''"""A small MLP that predicts one number, trained with the mean squared error."""

import pytorch_lightning as pl
import torch
from torchmetrics import MeanSquaredError


class Regressor(pl.LightningModule):
    def __init__(self, num_features: int, hidden: int = 32, lr: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(num_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )
        self.val_mse, self.test_mse = MeanSquaredError(), MeanSquaredError()

    def forward(self, features):
        return self.net(features).squeeze(-1)

    def training_step(self, batch, batch_idx):
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self(features), targets)
        self.log("train/mse", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        features, targets = batch
        self.val_mse(self(features), targets)
        self.log("val/mse", self.val_mse, prog_bar=True)

    def test_step(self, batch, batch_idx):
        features, targets = batch
        self.test_mse(self(features), targets)
        self.log("test/mse", self.test_mse)

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
'''

DIABETES = '''"""scikit-learn's diabetes data: 10 measurements of 442 patients, their disease progression a year on."""

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

ROWS = {"train": slice(0, 300), "val": slice(300, 353), "test": slice(353, None)}


class DiabetesDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int = 64, predict_path: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model_kwargs = {"num_features": 10}

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_diabetes

        features, targets = load_diabetes(return_X_y=True, scaled=False)
        # Standardized with the training rows' statistics, for training and for new inputs alike.
        self.mean, self.std = features[ROWS["train"]].mean(axis=0), features[ROWS["train"]].std(axis=0)
        if stage == "predict":
            self.splits = {"predict": TensorDataset(self.standardize(np.load(self.hparams.predict_path)))}
            return
        self.splits = {
            name: TensorDataset(self.standardize(features[rows]), torch.tensor(targets[rows], dtype=torch.float32))
            for name, rows in ROWS.items()
        }

    def standardize(self, features):
        return torch.tensor((features - self.mean) / self.std, dtype=torch.float32)

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=self.hparams.batch_size)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=self.hparams.batch_size)

    def predict_dataloader(self):
        return DataLoader(self.splits["predict"], batch_size=self.hparams.batch_size)
'''

CONFIGS = {
    "configs/model/regressor.yaml": f"""# A small MLP for regression (src/{PACKAGE}/models/regressor.py).
_target_: {PACKAGE}.models.regressor.Regressor
hidden: 32
lr: 0.01
""",
    "configs/data/diabetes.yaml": f"""# scikit-learn's diabetes data (src/{PACKAGE}/data/diabetes.py).
_target_: {PACKAGE}.data.diabetes.DiabetesDataModule
batch_size: 64
# A .npy file of raw measurements, (N, 10), to predict on: python evaluate.py <run dir> predict=<file>.
predict_path: null
""",
    # The regression logs val/mse, not val/loss: its experiment says what to monitor.
    "configs/experiment/diabetes_regressor.yaml": """# @package _global_
# Regression on scikit-learn's diabetes data: `python train.py experiment=diabetes_regressor`.
defaults:
  - override /data: diabetes
  - override /model: regressor

monitor:
  metric: val/mse
  mode: min
""",
}

REGRESSION = ["model=regressor", "data=diabetes", "monitor.metric=val/mse"]
# Searched as a user would search a model of their own: the example search space (the mlp's) is
# emptied, and the command line says what to search.
REGRESSION_SEARCH = [
    "search_space=[]",
    "model.lr=tag(log, interval(1e-3, 1e-1))",
    "model.hidden=choice(8, 32)",
]
IMAGES = ["data=image_folder", "data.num_workers=2", "data.image_size=[16,16]", "data.batch_size=16"]
SHORT = ["trainer.max_epochs=2", "trainer.accelerator=cpu", "callbacks.early_stopping=null"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh bake, the outside task's files added; nothing of the template is changed."""
    project = bake(tmp_path_factory.mktemp("outside"), project="outside-lab")
    run("git", "init", "--quiet", cwd=project)
    package = project / "src" / PACKAGE
    (package / "models" / "regressor.py").write_text(REGRESSOR)
    (package / "data" / "diabetes.py").write_text(DIABETES)
    for name, text in CONFIGS.items():
        (project / name).write_text(text)
    return project


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    """PNG files in train/<class>/ (60) and test/<class>/ (15): the validation images are drawn from train/."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    prototypes = rng.integers(0, 256, size=(3, 16, 16, 3))
    for split, count in (("train", 20), ("test", 5)):
        for label, prototype in enumerate(prototypes):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(prototype + rng.normal(0, 40, size=prototype.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def command(project: Path, logs: Path, script: str, *arguments: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "LOG_DIR": str(logs),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    result = run(sys.executable, script, *arguments, cwd=project, env=env, timeout=600)
    return result.stdout + result.stderr


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def the_run(logs: Path) -> Path:
    (run_dir,) = (logs / "train" / "runs").iterdir()
    return run_dir


def sweep_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep_results.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def evaluated(project: Path, run_dir: Path, *options: str) -> dict:
    output = command(project, run_dir.parent, "evaluate.py", str(run_dir), *options)
    written = Path(output.rsplit("Written to ", 1)[1].split()[0])
    assert written.parent.parent == run_dir
    return json.loads(written.read_text()) if written.suffix == ".json" else {"rows": read_rows(written)}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def check_one_run(project: Path, tmp_path: Path, task: list[str], metric: str) -> tuple[Path, str]:
    """train.py, then the same run resumed for one more epoch; the first run's folder and output."""
    logs = tmp_path / "single"
    output = command(project, logs, "train.py", *task, *SHORT)
    run_dir = the_run(logs)
    record = summary(run_dir)
    assert record["status"] == "completed" and "bookkeeping_errors" not in record, record
    assert record["monitor"]["metric"] == metric
    assert {metric, metric.replace("val/", "test/")} <= record["metrics"].keys()
    steps_per_epoch = record["global_step"] // 2

    resumed = tmp_path / "resumed"
    last = run_dir / "checkpoints" / "last.ckpt"
    command(project, resumed, "train.py", *task, *SHORT, "trainer.max_epochs=3", f"ckpt_path={last}")
    assert summary(the_run(resumed))["global_step"] == 3 * steps_per_epoch
    return run_dir, output


def check_sweeps(project: Path, tmp_path: Path, task: list[str], grid: str, search: list[str], metric: str) -> None:
    grid_dir = tmp_path / "grid"
    command(project, tmp_path / "logs", "train.py", "-m", *task, *SHORT, grid, f"hydra.sweep.dir={grid_dir}")
    rows = sweep_rows(grid_dir)
    assert len(rows) == 2 and all(row["status"] == "completed" and float(row[metric]) > 0 for row in rows), rows

    search_dir = tmp_path / "search"
    arguments = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={search_dir}", *search]
    command(project, tmp_path / "logs", "train.py", *task, *SHORT, *arguments)
    rows = sweep_rows(search_dir)
    assert len(rows) == 3 and all(row["status"] == "completed" for row in rows), rows
    assert (search_dir / "optuna.db").is_file()


def check_ddp_evaluates_exactly(project: Path, tmp_path: Path, task: list[str], metric: str) -> None:
    """Two gloo processes test the best checkpoint, each on its share of an odd number of examples;
    evaluate.py, one process, gets the same ``metric``."""
    logs = tmp_path / "ddp"
    command(project, logs, "train.py", *task, *SHORT, "trainer=ddp_cpu", "trainer.devices=2")
    run_dir = the_run(logs)
    record = summary(run_dir)
    assert record["status"] == "completed"
    single = evaluated(project, run_dir)
    assert single["metrics"][metric] == pytest.approx(record["metrics"][metric], rel=1e-5)


def test_regression_from_outside(project, tmp_path):
    run_dir, output = check_one_run(project, tmp_path, REGRESSION, "val/mse")
    assert "Callback validation_images is off: neither the model nor the data declares num_classes" in output

    # The test split evaluated again, then predicted from the raw measurements.
    record = summary(run_dir)
    assert evaluated(project, run_dir)["metrics"]["test/mse"] == pytest.approx(record["metrics"]["test/mse"], rel=1e-5)
    from sklearn.datasets import load_diabetes

    features, targets = load_diabetes(return_X_y=True, scaled=False)
    np.save(tmp_path / "patients.npy", features[353:])
    rows = evaluated(project, run_dir, f"predict={tmp_path / 'patients.npy'}")["rows"]
    predicted = np.array([float(row["prediction"]) for row in rows])
    assert np.mean((predicted - targets[353:]) ** 2) == pytest.approx(record["metrics"]["test/mse"], rel=1e-4)

    check_sweeps(project, tmp_path, REGRESSION, "model.lr=1e-2,1e-3", REGRESSION_SEARCH, "val/mse")
    check_ddp_evaluates_exactly(project, tmp_path, REGRESSION, "test/mse")


def test_image_folder_from_outside(project, image_tree, tmp_path):
    task = [*IMAGES, f"data.root={image_tree}"]
    run_dir, _ = check_one_run(project, tmp_path, task, "val/loss")

    record = summary(run_dir)
    assert evaluated(project, run_dir)["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    rows = evaluated(project, run_dir, f"predict={image_tree / 'test'}")["rows"]
    assert len(rows) == 15 and {row["input"].split("/")[0] for row in rows} == {"class_0", "class_1", "class_2"}
    accuracy = np.mean([row["input"].split("/")[0] == row["class"] for row in rows])
    assert accuracy == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)

    # The example search is the mlp's, which this task trains: it runs as it is.
    check_sweeps(project, tmp_path, task, "model.optimizer.lr=1e-2,1e-3", [], "val/loss")
    check_ddp_evaluates_exactly(project, tmp_path, task, "test/acc")


def test_the_projects_own_tests_take_the_new_model_and_data(project):
    """The bake's own tests pair every model with the data that fits it: the regressor with diabetes alone."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "WANDB_MODE": "offline"}
    # The tests that are parametrized over the options of the model and data groups, for the new options.
    tests = ["tests/test_configs.py", "tests/test_train.py", "-k", "regressor or diabetes"]
    result = run(sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *tests, cwd=project, env=env)
    verdicts = {
        "test_fast_dev_run[regressor-diabetes]": "PASSED",
        "test_experiment_runs[diabetes_regressor]": "PASSED",
        "test_option_instantiates[model=regressor]": "PASSED",
        "test_option_instantiates[data=diabetes]": "PASSED",
        "test_fast_dev_run[regressor-digits]": "SKIPPED",
        "test_fast_dev_run[mlp-diabetes]": "SKIPPED",
        "test_batches_are_normalized_without_touching_the_data[diabetes]": "SKIPPED",
    }
    for test, verdict in verdicts.items():
        assert f"{test} {verdict}" in result.stdout, result.stdout[-3000:]
