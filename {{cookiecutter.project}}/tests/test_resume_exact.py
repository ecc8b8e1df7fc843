"""A run resumed from a checkpoint taken mid-epoch ends as the uninterrupted run does (harness/sampling.py).

Each test trains the same configuration three times as real ``python train.py`` processes: once
straight through; once stopped (an exception on every rank) after the checkpoint of a step in the
middle of the second epoch; and once resumed from that checkpoint. The resumed run must draw the
rest of that epoch, batch for batch, as the uninterrupted one did, and end with the same weights
and metrics, the training ones averaged over the resumed epoch included (the classifier keeps each
rank's running sums in a mid-epoch checkpoint). Dropout makes the random generators' states matter too.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, subprocess_env, summary

# Digits: 1294 training examples, 21 batches of 64 per epoch in one process (step 30: batch 9 of
# epoch 1), 11 per rank on two (step 15: batch 4 of epoch 1). A checkpoint every 5 steps.
COMMON = (
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "model.net.dropout=0.1",
    "callbacks.early_stopping=null",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=5",
    "logger=none",
    "test=false",
)


def run(tmp_path: Path, name: str, *overrides: str, ok: bool = True) -> tuple[dict, list[dict]]:
    """Train in ``tmp_path/name``: the run's summary and each rank's probe view."""
    probes = tmp_path / name / "probes"
    probes.mkdir(parents=True)
    env = subprocess_env(tmp_path / name / "logs", PROBE_DIR=str(probes))
    command = [sys.executable, "train.py", *COMMON, *overrides]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if (result.returncode == 0) != ok:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    (run_dir,) = (tmp_path / name / "logs" / "train" / "runs").iterdir()
    views = sorted((json.loads(p.read_text()) for p in probes.glob("rank*.json")), key=lambda v: v["global_rank"])
    return {**summary(run_dir), "run_dir": run_dir}, views


def assert_resumes_exactly(tmp_path: Path, stop_step: int, *overrides: str, requeue: bool = False) -> None:
    """Resume from the stopped run's last.ckpt, or with ``requeue`` from a requeue checkpoint saved mid-batch."""
    expected, straight = run(tmp_path, "straight", *overrides)
    stop = ["+callbacks.stop._target_=interrupt.StopAtStep", f"+callbacks.stop.step={stop_step}"]
    hpc_ckpt = tmp_path / "hpc_ckpt_1.ckpt"
    if requeue:
        stop.append(f"+callbacks.stop.save_as={hpc_ckpt}")
    run(tmp_path, "stopped", *overrides, *stop, ok=False)
    checkpoint = hpc_ckpt if requeue else next((tmp_path / "stopped" / "logs").rglob("checkpoints/last.ckpt"))
    resumed, views = run(tmp_path, "resumed", *overrides, f"ckpt_path={checkpoint}")

    assert resumed["status"] == "completed" and resumed["global_step"] == expected["global_step"]
    for rank, (whole, after) in enumerate(zip(straight, views, strict=True)):
        assert after["train_batches"] == whole["train_batches"][stop_step:], rank
    assert {"val/loss", "train/loss_epoch"} <= expected["metrics"].keys()
    assert resumed["metrics"] == expected["metrics"]
    weights = [torch.load(r["last_checkpoint"], weights_only=True)["state_dict"] for r in (resumed, expected)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "data", ["probe.ProbedDigits", "interrupt.PlainShuffleDigits"], ids=["in_memory", "plain_dataloader"]
)
def test_resumed_mid_epoch_trains_as_uninterrupted(tmp_path, data):
    assert_resumes_exactly(tmp_path, 30, f"data._target_={data}")


@pytest.mark.slow
def test_resumed_mid_epoch_trains_as_uninterrupted_under_ddp(tmp_path):
    # Two gloo processes: each rank resumes its own DistributedSampler shard where it stopped, from the
    # checkpoint a SLURM requeue would write (with a batch in flight).
    assert_resumes_exactly(
        tmp_path,
        15,
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data._target_=interrupt.PlainShuffleDigits",
        requeue=True,
    )
