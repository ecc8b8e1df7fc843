"""What a run shows: TensorBoard images, hparams and system readings read back, the LR finder, device checks."""

import logging
import re
from pathlib import Path

import psutil
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from {{ cookiecutter.package_name }}.harness import devices
from {{ cookiecutter.package_name }}.harness.callbacks import SystemMonitor, validation_images

from conftest import summary


def events(run_dir: Path) -> EventAccumulator:
    return EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()


def hparams_plugin(accumulator: EventAccumulator) -> dict:
    return {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in accumulator.PluginTagToContent("hparams").items()
    }


def test_tensorboard_holds_images_hparams_and_system_readings(make_cfg, train, tmp_path, caplog):
    overrides = ["debug=limit", "trainer.max_epochs=3", "callbacks.system_monitor.interval_s=0"]
    overrides += ["callbacks.validation_images.every_n_epochs=2", "callbacks.validation_images.num_samples=12"]
    with caplog.at_level(logging.INFO):
        train(make_cfg(*overrides))
    assert re.search(r"Training on cpu \(1 process\(es\)\)\. Found CPU: \d+ cores, [\d.]+ GiB RAM", caplog.text)
    run_dir = tmp_path / "run"
    record = summary(run_dir)
    assert record["status"] == "completed" and "bookkeeping_errors" not in record
    accumulator = events(run_dir)

    # Validation images after epochs 0 and 2 (5 steps each), not after epoch 1 or the sanity check.
    for tag in ("val/confusion_matrix", "val/predictions"):
        assert [image.step for image in accumulator.Images(tag)] == [5, 15], tag
        assert accumulator.Images(tag)[0].encoded_image_string.startswith(b"\x89PNG")

    plugin = hparams_plugin(accumulator)
    hparams = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert hparams["model/optimizer/lr"].number_value == 1e-3
    assert hparams["trainer/max_epochs"].number_value == 3
    assert hparams["paths/output_dir"].string_value == str(run_dir)
    metric_tags = {info.name.tag for info in plugin["_hparams_/experiment"].experiment.metric_infos}
    assert {"final/val/acc", "final/val/loss", "final/test/acc"} <= metric_tags
    assert accumulator.Scalars("final/test/acc")[0].value == pytest.approx(record["metrics"]["test/acc"])

    scalars = set(accumulator.Tags()["scalars"])
    assert {"system/cpu_percent", "system/ram_used_gib", "system/process_rss_gib"} <= scalars
    assert 0 < accumulator.Scalars("system/process_rss_gib")[-1].value < 64


def test_failing_visualisation_is_reported_and_training_goes_on(make_cfg, train, tmp_path, monkeypatch):
    def broken(matrix):
        raise ValueError("no figure today")

    monkeypatch.setattr(validation_images, "confusion_figure", broken)
    train(make_cfg("debug=limit", "callbacks.validation_images.every_n_epochs=1"))
    record = summary(tmp_path / "run")
    assert record["status"] == "completed" and record["epoch"] == 2
    errors = record["bookkeeping_errors"]["callback validation_images.on_validation_epoch_end"]
    assert errors["count"] == 2 and "no figure today" in errors["error"]


def test_lr_finder_saves_its_plot_and_training_uses_the_suggestion(make_cfg, train, tmp_path):
    # Without batch norm the MLP's loss falls steeply around the suggested rate.
    train(make_cfg("tune_lr=true", "debug=limit", "trainer.max_epochs=1", "test=false", "model.net.batch_norm=false"))
    run_dir = tmp_path / "run"
    found = summary(run_dir)["lr_find"]
    suggestion = found["suggested_lr"]
    assert suggestion is not None and suggestion != 1e-3 and found["lr"] == suggestion
    assert "rejected" not in found
    plot = Path(found["plot"])
    assert plot == run_dir / "lr_find.png" and plot.read_bytes().startswith(b"\x89PNG")
    assert "lr_find" in events(run_dir).Tags()["images"]

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == pytest.approx(suggestion)
    # The optimizer that trained ran at the suggested rate (the default config has no scheduler).
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(suggestion)


def test_lr_finder_suggestion_from_a_flat_curve_is_not_used(make_cfg, train, tmp_path, caplog):
    # The default MLP (batch norm) on digits: Lightning picks a rate where the curve is flat, far below 1e-3.
    with caplog.at_level(logging.WARNING):
        train(make_cfg("tune_lr=true", "debug=limit", "trainer.max_epochs=1", "test=false"))
    found = summary(tmp_path / "run")["lr_find"]
    assert found["suggested_lr"] < 1e-4 and found["lr"] == 1e-3
    assert "the loss curve is flat there" in found["rejected"]
    assert "Training with the configured lr=0.001" in caplog.text
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_gpu_fails_before_any_work(make_cfg, train, tmp_path):
    with pytest.raises(devices.NoGPUError, match="trainer=cpu"):
        train(make_cfg("trainer.accelerator=gpu"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_idle_gpu_is_reported_loudly(monkeypatch, caplog):
    # The branch for a machine with a GPU, where the GPU count is the only thing this machine cannot give.
    monkeypatch.setattr("lightning_fabric.accelerators.cuda.num_cuda_devices", lambda: 2)
    with caplog.at_level(logging.WARNING):
        devices.check("cpu")
    assert "2 GPU(s) present, but this run trains on the CPU" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where NVML cannot read a GPU")
def test_unreadable_gpu_leaves_cpu_and_ram_readings(caplog):
    monitor = SystemMonitor()
    monitor._process, monitor._gpus = psutil.Process(), [0]  # as setup() leaves it on a GPU run
    with caplog.at_level(logging.WARNING):
        readings = monitor.read()
    assert "GPU readings switched off" in caplog.text and monitor._gpus == []
    assert {"system/cpu_percent", "system/ram_percent"} <= readings.keys()
    assert not any(name.startswith("system/gpu") for name in readings)
