"""EMA weights (callbacks=[default,ema]): validation, test and checkpoints use the average; resuming keeps it exact."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from pytorch_lightning import Callback

from {{ cookiecutter.package_name }}.models import Classifier

from conftest import ROOT, subprocess_env, summary

EMA = ("callbacks=[default,ema]", "callbacks.ema.decay=0.9")
QUIET = ("callbacks.progress_bar=null", "logger=none")


class KillAt(Callback):
    """``kill -9`` of this process when training reaches batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def evaluate(checkpoint: str, state: str, cfg, stage: str) -> dict[str, float]:
    """The metrics of ``checkpoint[state]`` in a fresh Trainer, one process."""
    from hydra.utils import instantiate
    from pytorch_lightning import Trainer

    model = Classifier.load_from_checkpoint(checkpoint)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)[state])
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = getattr(trainer, stage)(model, datamodule=instantiate(cfg.data), verbose=False)
    return metrics


def test_validation_test_and_checkpoints_use_the_averaged_weights(make_cfg, train, tmp_path):
    cfg = make_cfg(*EMA, *QUIET, "trainer.max_epochs=3")
    train(cfg)
    record = summary(tmp_path / "run")
    last, best = record["last_checkpoint"], record["best_checkpoint"]
    saved = torch.load(last, weights_only=True)
    # The checkpoint's state_dict is the average; the live weights are kept beside it for resuming.
    averaged, live = saved["state_dict"], saved["current_model_state"]
    assert averaged.keys() == live.keys()
    assert not all(torch.equal(averaged[name], live[name]) for name in averaged)
    assert int(saved["averaging_state"]["n_averaged"]) == record["global_step"] == 3 * 21

    # The last validation (before last.ckpt was saved) ran on the average, and so did the test of the best checkpoint.
    assert record["metrics"]["val/loss"] == pytest.approx(evaluate(last, "state_dict", cfg, "validate")["val/loss"])
    test_of_average = evaluate(best, "state_dict", cfg, "test")["test/loss"]
    test_of_live_weights = evaluate(best, "current_model_state", cfg, "test")["test/loss"]
    assert record["metrics"]["test/loss"] == pytest.approx(test_of_average)
    assert record["metrics"]["test/loss"] != pytest.approx(test_of_live_weights)
    # load_from_checkpoint gives the averaged model.
    loaded = Classifier.load_from_checkpoint(last).state_dict()
    assert all(torch.equal(loaded[name], averaged[name]) for name in averaged)


def test_before_the_start_step_it_changes_nothing(make_cfg, train, tmp_path):
    plain = make_cfg(*QUIET, "trainer.max_epochs=2", output_dir=tmp_path / "plain")
    waiting = make_cfg(*EMA, *QUIET, "trainer.max_epochs=2", "callbacks.ema.update_starting_at_step=1000")
    train(plain)
    train(waiting)
    expected, record = summary(tmp_path / "plain"), summary(tmp_path / "run")
    # No average yet: validation, test and checkpoints use the live weights, as without EMA.
    assert record["metrics"] == expected["metrics"]
    saved = torch.load(record["last_checkpoint"], weights_only=True)
    assert "current_model_state" not in saved
    expected_weights = torch.load(expected["last_checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(saved["state_dict"][name], expected_weights[name]) for name in expected_weights)


@pytest.mark.slow
def test_killed_and_resumed_ends_with_the_same_averaged_weights(tmp_path):
    deterministic = ("trainer.deterministic=true", "model.net.dropout=0.1")
    overrides = [*EMA, *QUIET, *deterministic, "trainer.max_epochs=3", "test=false"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def run(log_dir, *extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "train.py", *overrides, *extra]
        return subprocess.run(command, cwd=ROOT, env=subprocess_env(log_dir), capture_output=True, timeout=300)

    assert run(straight).returncode == 0
    # kill -9 in the middle of epoch 2, after the checkpoint of epoch 1; then resume from it.
    kill = ("+callbacks.kill._target_=test_ema.KillAt", "+callbacks.kill.epoch=2", "+callbacks.kill.batch=5")
    assert run(killed, *kill).returncode == -signal.SIGKILL
    assert run(killed, "ckpt_path=last").returncode == 0

    (expected_dir,) = (straight / "train" / "runs").iterdir()
    resumed_dir = max((killed / "train" / "runs").iterdir(), key=lambda path: path.name)
    expected = torch.load(expected_dir / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == expected["global_step"] == 3 * 21
    for part in ("state_dict", "current_model_state", "averaging_state"):
        assert resumed[part].keys() == expected[part].keys()
        for name in expected[part]:
            assert torch.equal(resumed[part][name], expected[part][name]), f"{part}.{name}"
    assert summary(resumed_dir)["metrics"] == summary(expected_dir)["metrics"]
