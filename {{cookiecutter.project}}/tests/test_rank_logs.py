"""A log per rank: every process of a run writes its own log file, and a failure names the rank that failed first."""

import json
import logging
import subprocess
import sys
import time

import pytest
from pytorch_lightning import Callback

from {{ cookiecutter.package_name }}.harness import rank_logs

from conftest import ROOT, subprocess_env, summary


class InjectedFault(RuntimeError):
    pass


class RaiseOnRank(Callback):
    """Raises on global rank ``rank`` when training reaches global step ``at_step``."""

    def __init__(self, rank: int, at_step: int):
        self.rank, self.at_step = rank, at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.rank and trainer.global_step == self.at_step:
            raise InjectedFault(f"rank {self.rank} fails at step {self.at_step}")


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_and_its_traceback_is_in_the_run_folder(tmp_path):
    fault = ("+callbacks.fault._target_=test_rank_logs.RaiseOnRank", "+callbacks.fault.rank=1")
    command = [
        *(sys.executable, "train.py", "trainer=ddp_cpu", "trainer.devices=2"),
        *("trainer.max_epochs=2", "test=false", "callbacks.progress_bar=null", "logger=none"),
        *(*fault, "+callbacks.fault.at_step=3"),
    ]
    # A hang would run into the timeout: the job must end on its own once rank 1 is gone.
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(tmp_path / "logs"), capture_output=True, timeout=300)
    assert result.returncode != 0

    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    rank1 = (run_dir / "rank1.log").read_text()
    assert "GLOBAL_RANK: 1" in rank1, "rank 1's own Python logging"
    assert "Traceback (most recent call last)" in rank1
    assert "InjectedFault: rank 1 fails at step 3" in rank1
    assert "training goes on" not in rank1, "no callback of rank 1 failed on the way out"
    # Rank 0's train.log is rank 0's alone, as before; Lightning's launcher no longer leaves train_ddp_process_1.log.
    train_log = (run_dir / "train.log").read_text()
    assert "GLOBAL_RANK: 0" in train_log and "GLOBAL_RANK: 1" not in train_log
    assert "InjectedFault" not in train_log
    assert sorted(path.name for path in run_dir.glob("*.log")) == ["rank1.log", "train.log"]

    record = summary(run_dir)
    assert record["status"] == "failed"
    first = record["first_failure"]
    assert (first["rank"], first["error"], first["log"]) == (1, "InjectedFault: rank 1 fails at step 3", "rank1.log")


def test_a_single_process_failure_is_its_own_first_failure(make_cfg, train, tmp_path):
    cfg = make_cfg(
        "trainer.max_epochs=1",
        "logger=none",
        "+callbacks.fault._target_=test_rank_logs.RaiseOnRank",
        "+callbacks.fault.rank=0",
        "+callbacks.fault.at_step=2",
    )
    with pytest.raises(InjectedFault):
        train(cfg)
    record = summary(tmp_path / "run")
    assert record["status"] == "failed" and record["error"] == "InjectedFault: rank 0 fails at step 2"
    assert record["first_failure"]["rank"] == 0 and record["first_failure"]["error"] == record["error"]


def test_the_earliest_failure_since_the_start_is_the_first(tmp_path, monkeypatch):
    def fail(rank: int, message: str) -> None:
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        rank_logs.record_failure(tmp_path, RuntimeError(message))

    fail(1, "left from an earlier attempt of a requeued job")
    started = time.time()
    fail(2, "the real cause")
    fail(0, "Connection closed by peer")
    fail(1, "closed too")
    first = rank_logs.first_failure(tmp_path, since=started)
    assert (first["rank"], first["error"]) == (2, "RuntimeError: the real cause")
    assert json.loads((tmp_path / "rank0.error.json").read_text())["error"] == "RuntimeError: Connection closed by peer"


def test_the_traceback_goes_to_the_log_file_only(tmp_path, capsys):
    handler = logging.FileHandler(tmp_path / "rank3.log")
    logging.getLogger().addHandler(handler)
    try:
        try:
            raise ValueError("bad shape")
        except ValueError as error:
            rank_logs.record_failure(tmp_path, error)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "rank3.log").read_text()
    assert text.startswith("This process failed:\nTraceback (most recent call last):")
    assert 'raise ValueError("bad shape")' in text and text.rstrip().endswith("ValueError: bad shape")
    assert "bad shape" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "rank0"),
        ({"LOCAL_RANK": "3"}, "rank3"),
        ({"NODE_RANK": "1", "LOCAL_RANK": "2"}, "node1-rank2"),
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "5", "LOCAL_RANK": "1"}, "rank5"),
        ({"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "6", "LOCAL_RANK": "2"}, "rank6"),
    ],
)
def test_each_launcher_names_the_process(monkeypatch, env, name):
    for variable in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert rank_logs.process_name() == name
