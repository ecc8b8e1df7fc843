"""Training end to end, in process: fast_dev_run everywhere, then real short runs."""

import csv
import json
import logging
import math
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package_name }}.data import DatasetNotFoundError, InMemoryDataModule, MNISTDataModule
from {{ cookiecutter.package_name }}.models import Classifier

from conftest import group_options, misfit, monitor_of_pairing, summary


@pytest.mark.parametrize("data", group_options("data"))
@pytest.mark.parametrize("model", group_options("model"))
def test_fast_dev_run(make_cfg, train, tmp_path, model, data):
    overrides = (f"model={model}", f"data={data}", "debug=fast_dev_run", "data.batch_size=16")
    cfg = make_cfg(*overrides, *monitor_of_pairing(model, data))
    if reason := misfit(cfg):
        pytest.skip(reason)
    train(cfg)
    assert summary(tmp_path / "run")["status"] == "completed"


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_runs(make_cfg, train, tmp_path, experiment):
    cfg = make_cfg(f"experiment={experiment}", "debug=fast_dev_run", "data.batch_size=16")
    cfg.trainer.accelerator, cfg.trainer.precision = "cpu", "32-true"
    train(cfg)
    assert summary(tmp_path / "run")["status"] == "completed"


# Each shipped model with small datasets of its shapes (600 and 500 images), its default optimizer and learning rate.
SMALL_DATA = [
    pytest.param("mlp", "mnist", id="mlp-mnist"),
    pytest.param("cnn", "mnist", id="cnn-mnist", marks=pytest.mark.slow),
    pytest.param("cnn", "cifar10", id="cnn-cifar10", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("model", "data"), SMALL_DATA)
def test_defaults_do_not_diverge_on_a_small_dataset(make_cfg, train, tmp_path, model, data):
    overrides = ("trainer.max_epochs=2", "callbacks.early_stopping=null", "logger=csv", "test=false")
    cfg = make_cfg(f"model={model}", f"data={data}", *overrides)
    train(cfg)
    with (tmp_path / "run" / "csv" / "metrics.csv").open(newline="") as file:
        losses = [float(row["val/loss"]) for row in csv.DictReader(file) if row["val/loss"]]
    assert len(losses) == 2
    # Guessing uniformly among 10 classes scores ln(10) = 2.3; a model that diverged scores far above.
    assert all(math.isfinite(loss) and loss < 2 * math.log(10) for loss in losses), losses


@pytest.fixture
def short_run(make_cfg, train, tmp_path):
    cfg = make_cfg("trainer.max_epochs=3", "logger=many")
    best = train(cfg)
    return tmp_path / "run", best


def test_run_dir_contents(short_run):
    run_dir, best = short_run
    record = summary(run_dir)
    assert record["status"] == "completed"
    assert record["monitor"] == {"metric": "val/loss", "mode": "min", "best": best}
    assert record["global_step"] == 3 * 21  # 1293 training digits / batch 64
    assert {"val/acc", "val/loss", "train/loss_epoch", "train/acc", "test/acc"} <= record["metrics"].keys()
    assert Path(record["best_checkpoint"]).is_file() and Path(record["last_checkpoint"]).is_file()
    for name in ("config_resolved.yaml", "provenance.json", "csv/metrics.csv"):
        assert (run_dir / name).is_file(), name
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["versions"]["torch"] == metadata.version("torch")
    assert {"commit", "dirty"} <= provenance["git"].keys()
    assert "${" not in (run_dir / "config_resolved.yaml").read_text()


def test_tensorboard_holds_loss_and_accuracy(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = short_run
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc"} <= tags
    assert len(events.Scalars("val/acc")) == 3
    assert 0.0 < events.Scalars("val/acc")[-1].value <= 1.0


def test_checkpoint_loads_safely_and_reproduces_its_metric(short_run, make_cfg):
    from hydra.utils import instantiate
    from pytorch_lightning import Trainer

    run_dir, best = short_run
    path = summary(run_dir)["best_checkpoint"]
    state = torch.load(path, weights_only=True)
    assert state["hyper_parameters"]["optimizer"]["lr"] == 1e-3
    model = Classifier.load_from_checkpoint(path)
    datamodule = instantiate(make_cfg().data)
    (metrics,) = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).validate(model, datamodule)
    assert metrics["val/loss"] == pytest.approx(best, rel=1e-5)


# A few batches per epoch, no logger and no test phase: 6 training steps per epoch.
BRIEF = (
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=2",
    "trainer.accelerator=cpu",
    "logger=none",
    "test=false",
)


@pytest.mark.parametrize(
    ("overrides", "final_step"),
    [
        # val/loss falls, so with mode=max only epoch 0 makes the top k: last.ckpt must still follow the training.
        (("trainer.max_epochs=3", "monitor.mode=max"), 3 * 6),
        # Stopped by max_steps in the middle of an epoch, after the last validation.
        (("trainer.max_epochs=3", "trainer.max_steps=8"), 8),
        # Stopped early: patience 1, and mode=max never improves after epoch 0.
        (("trainer.max_epochs=5", "monitor.mode=max", "callbacks.early_stopping.patience=1"), 2 * 6),
    ],
    ids=["no new best", "max_steps", "early stop"],
)
def test_last_checkpoint_holds_the_final_state(make_cfg, train, tmp_path, overrides, final_step):
    train(make_cfg(*BRIEF, *overrides))
    record = summary(tmp_path / "run")
    assert record["status"] == "completed" and record["global_step"] == final_step
    assert Path(record["last_checkpoint"]).name == "last.ckpt"
    assert torch.load(record["last_checkpoint"], weights_only=True)["global_step"] == final_step


def test_resume_continues_at_the_right_step(make_cfg, train, tmp_path):
    first, second = (tmp_path / "train" / "runs" / name for name in ("first", "second"))
    train(make_cfg("trainer.max_epochs=2", "callbacks.early_stopping=null", output_dir=first))
    assert summary(first)["global_step"] == 2 * 21
    train(make_cfg("trainer.max_epochs=4", "ckpt_path=last", "callbacks.early_stopping=null", output_dir=second))
    record = summary(second)
    assert record["global_step"] == 4 * 21
    assert record["epoch"] == 4
    assert record["resumed_from"] == {
        "run_dir": str(first),
        "checkpoint": str(first / "checkpoints" / "last.ckpt"),
        "status": "completed",
    }


def test_resume_takes_the_newest_run_of_the_same_experiment(make_cfg, train, tmp_path, caplog):
    ours, sweep_job, resumed = (
        tmp_path / "train" / "runs" / "ours",
        tmp_path / "train" / "multiruns" / "sweep" / "0",
        tmp_path / "train" / "runs" / "resumed",
    )
    train(make_cfg(*BRIEF, "trainer.max_epochs=1", output_dir=ours))
    # A newer job of a sweep over the learning rate: another experiment, however new.
    train(make_cfg(*BRIEF, "trainer.max_epochs=1", "model.optimizer.lr=0.01", output_dir=sweep_job))
    with caplog.at_level(logging.INFO):
        train(make_cfg(*BRIEF, "trainer.max_epochs=2", "ckpt_path=last", output_dir=resumed))
    assert summary(resumed)["resumed_from"]["run_dir"] == str(ours)
    assert f"ckpt_path=last: resuming run {ours} (completed)" in caplog.text
    assert summary(resumed)["global_step"] == 2 * 6


def test_resume_of_another_experiment_says_which_settings_differ(make_cfg, train, tmp_path):
    from {{ cookiecutter.package_name }}.harness.resume import ResumeError

    earlier = tmp_path / "train" / "runs" / "earlier"
    train(make_cfg(*BRIEF, "trainer.max_epochs=1", output_dir=earlier))
    with pytest.raises(ResumeError, match=r"model.net.hidden_dims \(\[32\] here, \[64, 128, 64\] there\)") as error:
        train(make_cfg(*BRIEF, "model.net.hidden_dims=[32]", "ckpt_path=last"))
    assert f"ckpt_path={earlier / 'checkpoints' / 'last.ckpt'}" in str(error.value)


def test_resume_without_checkpoint_says_what_to_do(make_cfg, train):
    with pytest.raises(FileNotFoundError, match="no checkpoint under .*Train once"):
        train(make_cfg("ckpt_path=last"))


def test_missing_dataset_names_the_folder(tmp_path):
    datamodule = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"into {tmp_path / 'MNIST' / 'raw'}")):
        datamodule.setup("fit")


def test_failed_run_is_recorded(make_cfg, train, tmp_path):
    with pytest.raises(Exception, match="negative dimension"):
        train(make_cfg("model.net.hidden_dims=[-1]"))
    record = summary(tmp_path / "run")
    assert record["status"] == "failed" and "negative dimension" in record["error"]


def test_debug_profiler_reports_where_the_time_went(make_cfg, train, caplog):
    # The default run swaps Lightning's no-op profiler for a cheaper one; a configured profiler still wins.
    with caplog.at_level("INFO", logger="pytorch_lightning.profilers"):
        train(make_cfg("debug=profiler", "test=false"))
    report = "\n".join(record.getMessage() for record in caplog.records)
    assert "Profiler Report" in report and "run_training_batch" in report


@pytest.mark.parametrize("data", group_options("data"))
def test_batches_are_normalized_without_touching_the_data(make_cfg, data):
    from hydra.utils import get_class, instantiate

    cfg = make_cfg(f"data={data}")
    if not issubclass(get_class(cfg.data._target_), InMemoryDataModule):
        pytest.skip("not in-memory data (test_image_folder.py checks data=image_folder's preprocessing)")
    datamodule = instantiate(cfg.data, augment=False)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.val_dataloader()))
    mean, std = torch.tensor(datamodule.mean).view(1, -1, 1, 1), torch.tensor(datamodule.std).view(1, -1, 1, 1)
    expected = (images.double() / datamodule.pixel_max - mean) / std
    normalized, _ = datamodule.on_after_batch_transfer((images, labels), 0)
    assert normalized.dtype == torch.float32
    torch.testing.assert_close(normalized.double(), expected, rtol=1e-5, atol=1e-5)
    # A batch that is already float is normalized on a copy, never in place.
    as_float = images.float()
    datamodule.on_after_batch_transfer((as_float, labels), 0)
    assert torch.equal(as_float, images.float())
