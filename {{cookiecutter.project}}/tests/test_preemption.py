"""Time limits and pre-emption on real processes: SIGTERM and SIGUSR1 sent to ``train.py`` (and to one
rank of a 2-process DDP run on gloo) at chosen moments (signalling.SignalAt), handled at a step boundary
by every rank (harness/preemption.py); SIGHUP and Ctrl-C, once and twice.

The SLURM half (requeue, 2 nodes) is in the template's tests/test_slurm.py.
"""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, subprocess_env, summary

pytestmark = pytest.mark.slow

# 3 epochs of 4 steps, deterministic, no logger: a run lasts seconds.
SHORT = [
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "callbacks.progress_bar=null",
    "logger=none",
]


def train(log_dir: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", *SHORT, *overrides]
    return subprocess.run(
        command, cwd=ROOT, env=subprocess_env(log_dir), capture_output=True, text=True, timeout=timeout
    )


def signalled(log_dir: Path, signum: str, phase: str, step: int = 0, *overrides: str, rank: int | None = None):
    sender = [
        "+callbacks.signal._target_=signalling.SignalAt",
        f"+callbacks.signal.signum={signum}",
        f"+callbacks.signal.phase={phase}",
        f"+callbacks.signal.step={step}",
    ]
    if rank is not None:
        sender.append(f"+callbacks.signal.rank={rank}")
    return train(log_dir, *sender, *overrides)


def only_run_dir(log_dir: Path) -> Path:
    (run_dir,) = (log_dir / "train" / "runs").iterdir()
    return run_dir


def hpc_step(run_dir: Path) -> int:
    (checkpoint,) = run_dir.glob("hpc_ckpt_*.ckpt")
    return torch.load(checkpoint, weights_only=True)["global_step"]


def test_sigterm_to_one_rank_stops_both_at_the_same_step_after_one_checkpoint(tmp_path):
    # Only rank 1 is signalled, in the middle of its 6th step; rank 0 learns of it at the step's end.
    result = signalled(tmp_path, "SIGTERM", "train", 5, "trainer=ddp_cpu", "trainer.devices=2", rank=1)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    record = summary(run_dir)
    assert record["status"] == "interrupted" and record["stopped_by"].startswith("SIGTERM: stopped")
    assert record["global_step"] == hpc_step(run_dir) == 6


# (signal, phase, global step it is sent at, global step of the requeue checkpoint): a signal during an
# epoch's last step, its validation or its checkpoint save is handled at the end of that epoch, after them.
BOUNDARIES = [
    ("SIGUSR1", "train", 3, 4),
    ("SIGUSR1", "validation", 4, 4),
    ("SIGTERM", "save", 4, 4),
    ("SIGUSR1", "train", 9, 10),
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    log_dir = tmp_path_factory.mktemp("uninterrupted")
    result = train(log_dir, "test=false")
    assert result.returncode == 0, result.stderr[-3000:]
    return summary(only_run_dir(log_dir))


@pytest.mark.parametrize(("signum", "phase", "step", "saved_at"), BOUNDARIES)
def test_a_signal_stops_at_the_next_boundary_and_the_run_resumes_from_there(
    tmp_path, uninterrupted, signum, phase, step, saved_at
):
    result = signalled(tmp_path, signum, phase, step, "test=false")
    # Outside SLURM nothing requeues: a stop, with the exit status a shell gives a process ended by the signal.
    assert result.returncode == 128 + signal.Signals[signum], result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert summary(run_dir)["status"] == "interrupted"
    assert hpc_step(run_dir) == saved_at

    (checkpoint,) = run_dir.glob("hpc_ckpt_*.ckpt")
    resumed = train(tmp_path, "test=false", f"ckpt_path={checkpoint}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (resumed_dir,) = set((tmp_path / "train" / "runs").iterdir()) - {run_dir}
    record = summary(resumed_dir)
    assert record["status"] == uninterrupted["status"] == "completed"
    assert record["global_step"] == uninterrupted["global_step"] == 12
    # Mid-epoch too: the resumed epoch trains on the batches the checkpoint had not reached (sampling.py).
    assert record["metrics"] == uninterrupted["metrics"]


def test_a_signal_after_training_does_not_fail_the_run(tmp_path):
    result = signalled(tmp_path, "SIGUSR1", "test")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert summary(run_dir)["status"] == "completed"
    assert "test/acc" in summary(run_dir)["metrics"]
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))


@pytest.mark.parametrize("signum", ["SIGHUP", "SIGINT"])
def test_sighup_and_a_first_ctrl_c_stop_at_the_next_step_after_a_checkpoint(tmp_path, signum):
    # A closed terminal (SIGHUP) or one Ctrl-C in the 3rd step: the run ends after it, like on SIGTERM.
    result = signalled(tmp_path, signum, "train", 2)
    assert result.returncode == 128 + signal.Signals[signum], result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    record = summary(run_dir)
    assert record["status"] == "interrupted" and record["stopped_by"].startswith(f"{signum}: stopped")
    assert record["global_step"] == hpc_step(run_dir) == 3
    said = "Ctrl-C: stopping at the next step; press again to stop now"
    assert (said in result.stdout + result.stderr) == (signum == "SIGINT")


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path):
    result = signalled(tmp_path, "SIGINT", "train", 2, "+callbacks.signal.times=2")
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert summary(run_dir)["status"] == "interrupted"
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))
