"""Weights & Biases in offline mode: real run files, no account, and the run is closed."""

import os
import subprocess
import sys

import wandb

from conftest import ROOT


def test_offline_run_writes_files_and_finishes(make_cfg, train, tmp_path):
    train(make_cfg("logger=wandb", "logger.wandb.mode=offline", "trainer.max_epochs=1"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    assert wandb.run is None  # finished, so the next run in this process starts its own


def wandb_processes() -> set[str]:
    listing = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in listing.splitlines() if "wandb" in line and "ps -e" not in line}


def test_no_wandb_process_outlives_train_py(tmp_path):
    before = wandb_processes()
    env = {**os.environ, "WANDB_MODE": "offline", "LOG_DIR": str(tmp_path)}
    subprocess.run(
        [sys.executable, "train.py", "logger=wandb", "trainer.max_epochs=1", "trainer.accelerator=cpu"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(tmp_path.glob("train/runs/*/wandb/offline-run-*")), "the run did not use W&B"
    assert wandb_processes() - before == set()
