"""A baked project on a real SLURM cluster (slurmctld + two slurmd on localhost, see slurm_cluster.py).

Jobs are submitted the way users submit them, ``python train.py -m cluster=slurm ...``, through
hydra-submitit-launcher and sbatch; they train digits on CPU for a few seconds.
"""

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from functools import partial
from pathlib import Path

import pytest

from conftest import run

pytestmark = pytest.mark.slow

# Each emulated node has one CPU.
SLURM = ["cluster=slurm", "hydra.launcher.cpus_per_task=1"]
TINY = ["trainer.accelerator=cpu", "test=false"]


@pytest.fixture
def env(slurm, installed_project, tmp_path):
    return {
        **slurm.env,
        # Ranks meet at $MASTER_ADDR; "node1" is no host name here.
        "MASTER_ADDR": "127.0.0.1",
        "LOG_DIR": str(tmp_path / "logs"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        # The jobs import the project even if another test session uninstalls it meanwhile.
        "PYTHONPATH": str(installed_project / "src"),
        # The job script runs `python`: this environment's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def sweep_dir(env: dict) -> Path:
    (found,) = (Path(env["LOG_DIR"]) / "train" / "multiruns").iterdir()
    return found


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def run_folders(sweep: Path) -> list[str]:
    return sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def submitit_logs(sweep: Path) -> dict[str, str]:
    """The job logs submitit keeps per task: ``<job id>_<task>_log.out`` -> text."""
    return {path.name: path.read_text() for path in sweep.glob(".submitit/*/*_log.out")}


def test_sweep_is_a_job_array_with_a_parallelism_limit(installed_project, env):
    run(
        sys.executable, "train.py", "-m", *SLURM, *TINY, "trainer.max_epochs=1", "seed=1,2",
        "hydra.launcher.array_parallelism=1", cwd=installed_project, env=env, timeout=300,
    )  # fmt: skip
    sweep = sweep_dir(env)
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1%1" in script.read_text()
    runs = [sweep / "0", sweep / "1"]
    for run_dir, seed in zip(runs, (1, 2), strict=True):
        assert summary(run_dir)["status"] == "completed"
        assert f"seed: {seed}" in (run_dir / "config_resolved.yaml").read_text()
    # Each task had an allocation of its own, one after the other although two nodes were free.
    job_ids = {re.search(r"job_id=(\S+?),", log)[1] for log in submitit_logs(sweep).values()}
    assert len(job_ids) == 2
    first, second = sorted((summary(d) for d in runs), key=lambda record: record["started_at"])
    end_of_first = dt.datetime.fromisoformat(first["started_at"]).timestamp() + first["wall_time_s"]
    assert dt.datetime.fromisoformat(second["started_at"]).timestamp() >= end_of_first - 1


def test_two_node_job_trains_across_both_nodes(installed_project, env):
    run(
        sys.executable, "train.py", "-m", *SLURM, *TINY, "trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2",
        "trainer.max_epochs=2", cwd=installed_project, env=env, timeout=300,
    )  # fmt: skip
    sweep = sweep_dir(env)
    record = summary(sweep / "0")
    assert record["status"] == "completed"
    # 1293 training digits split between two ranks: ceil(647 / 64) = 11 steps per epoch, not 21.
    assert record["global_step"] == 2 * 11
    logs = submitit_logs(sweep)
    assert len(logs) == 2, logs.keys()
    assert {re.search(r"node=(\d)\(2\)", log)[1] for log in logs.values()} == {"0", "1"}
    assert {re.search(r"global_rank=(\d)\(2\)", log)[1] for log in logs.values()} == {"0", "1"}
    assert run_folders(sweep) == ["0"]


def test_failed_job_is_failed_in_slurm_and_the_sweep_still_reports_every_job(installed_project, env, slurm):
    # lr=1e30 makes the loss NaN within a few steps: that job fails, the other completes.
    done = subprocess.run(
        [sys.executable, "train.py", "-m", *SLURM, *TINY, "trainer.max_epochs=1", "model.optimizer.lr=1e-3,1e30"],
        cwd=installed_project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "1 of 2 jobs failed" in done.stderr, done.stderr[-3000:]
    sweep = sweep_dir(env)
    assert [summary(sweep / job)["status"] for job in ("0", "1")] == ["completed", "failed"]
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    array_job = script.name.partition("_")[0]
    # submitit hands over a job's result just before its process ends.
    slurm.wait(array_job)
    states = {
        task: re.search(
            r"JobState=(\S+).*ExitCode=(\S+)",
            slurm.command("scontrol", "show", "job", f"{array_job}_{task}").stdout,
            re.S,
        ).groups()
        for task in (0, 1)
    }
    assert states == {0: ("COMPLETED", "0:0"), 1: ("FAILED", "1:0")}


def test_plain_sbatch_script_trains_in_the_folder_of_its_job(installed_project, env, slurm, tmp_path):
    # Its defaults fit a CPU partition: no GPU asked for, the accelerator taken from the allocation.
    submitted = run(
        "sbatch", "--parsable", f"--output={tmp_path}/%j.out",
        "scripts/slurm_job.sh", "test=false", "trainer.max_epochs=1", cwd=installed_project, env=env, timeout=300,
    )  # fmt: skip
    job_id = submitted.stdout.strip()
    slurm.wait(job_id)
    # Named by the job alone, so that a requeued job (same id, later start) finds its folder again.
    run_dir = Path(env["LOG_DIR"]) / "train" / "runs" / job_id
    output = (tmp_path / f"{job_id}.out").read_text()
    assert (run_dir / "summary.json").is_file() and summary(run_dir)["status"] == "completed", output[-3000:]
    resolved = (run_dir / "config_resolved.yaml").read_text()
    assert "accelerator: cpu" in resolved and "precision: 32-true" in resolved


def scalar_steps(tensorboard: Path) -> dict[str, list[int]]:
    """Every step each scalar was written at, over all event files, in writing order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = defaultdict(list)
    for path in sorted(tensorboard.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                steps[value.tag].append(event.step)
    return steps


def test_requeued_job_resumes_in_its_run_dir(installed_project, env, slurm, tmp_path):
    training = [
        *TINY, "data.batch_size=32", "trainer.max_epochs=5",
        "trainer.log_every_n_steps=10", "callbacks.early_stopping=null", "logger=many",
    ]  # fmt: skip
    # The same training without SLURM and without interruption, side by side, for comparison.
    reference = start([sys.executable, "train.py", *training], installed_project, env, tmp_path / "reference.out")
    submitter = start(
        [sys.executable, "train.py", "-m", *SLURM, *training], installed_project, env, tmp_path / "sub.out"
    )
    try:
        last = wait_for(lambda: next(Path(env["LOG_DIR"]).glob("train/multiruns/*/0/checkpoints/last.ckpt"), None))
        run_dir = last.parents[1]
        (script,) = run_dir.parent.glob(".submitit/*/*_submission.sh")
        job_id = script.name.partition("_")[0]
        # What SLURM sends signal_delay_s before the time limit (--signal=USR1@...): Lightning checkpoints, requeues.
        slurm.command("scancel", "--signal=USR1", job_id)
        submitter.wait(timeout=300)
        reference.wait(timeout=300)
    finally:
        submitter.kill()
        reference.kill()
    assert submitter.returncode == 0, (tmp_path / "sub.out").read_text()[-5000:]
    assert reference.returncode == 0, (tmp_path / "reference.out").read_text()[-5000:]
    assert "Restarts=1" in slurm.command("scontrol", "show", "job", job_id).stdout
    log = (run_dir / "train.log").read_text()
    assert re.search(r"Restoring states from the checkpoint path at .*/0/hpc_ckpt_1\.ckpt", log), log[-3000:]

    record = summary(run_dir)
    (reference_dir,) = (Path(env["LOG_DIR"]) / "train" / "runs").iterdir()
    uninterrupted = summary(reference_dir)
    assert record["status"] == uninterrupted["status"] == "completed"
    assert (record["global_step"], record["epoch"]) == (uninterrupted["global_step"], uninterrupted["epoch"])
    assert run_folders(run_dir.parent) == ["0"]
    assert len(list(run_dir.glob("hpc_ckpt_*.ckpt"))) <= 1

    # The same TensorBoard folder and W&B run go on, and no step is written twice.
    assert not [p for p in (run_dir / "tensorboard").iterdir() if p.is_dir()], "no version_N folder"
    steps = scalar_steps(run_dir / "tensorboard")
    for tag in ("train/loss_step", "val/loss"):
        assert steps[tag] == sorted(set(steps[tag])), (tag, steps[tag])
    assert len(steps["val/loss"]) == len(scalar_steps(reference_dir / "tensorboard")["val/loss"]) == 5
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(p.name.endswith(f"-{wandb_id}") for p in offline_runs)


def start(command: list[str], cwd: Path, env: dict, output: Path) -> subprocess.Popen:
    with output.open("w") as file:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=file, stderr=subprocess.STDOUT)


def wait_for(find, timeout: float = 240, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := find()) is not None:
            return found
        time.sleep(every)
    raise TimeoutError(f"nothing found after {timeout} s")


# Two nodes of one rank each, deterministic: 5 epochs of 6 steps, a run of some 20 s.
TWO_NODES = [
    *TINY, "trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2", "trainer.deterministic=true",
    "trainer.max_epochs=5", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
    "callbacks.early_stopping=null", "callbacks.progress_bar=null", "logger=none",
]  # fmt: skip


def signal_plan(rng: random.Random, boundaries: bool) -> list[str]:
    """The moments of one job's signals, one per epoch, then one after training: at the boundary of an
    epoch (in its validation, in its checkpoint save), or in a training step within it."""
    steps_per_epoch = 6
    if boundaries:
        return [rng.choice(["validation", "save"]) for _ in range(4)] + ["end"]
    # A step of epoch e before its last: handled at that step's end, mid-epoch.
    return [f"train {e * steps_per_epoch + rng.randrange(steps_per_epoch - 1)}" for e in range(4)] + ["end"]


def signal_job_at(slurm, env: dict, project: Path, tmp_path: Path, plan: list[str]) -> Path:
    """Runs one 2-node job through ``cluster=slurm``; sends SIGUSR1 (as a time limit does) at each moment of
    ``plan``, each after the requeued job has started again; returns its run folder."""
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    job_env = {**env, "PYTHONPATH": f"{project / 'src'}{os.pathsep}{project / 'tests'}"}
    pause = ["+callbacks.pause._target_=signalling.PauseForSignal", f"+callbacks.pause.folder={pauses}"]
    output = tmp_path / "submitter.out"
    submitter = start([sys.executable, "train.py", "-m", *SLURM, *TWO_NODES, *pause], project, job_env, output)
    try:
        script = wait_for(
            lambda: next(Path(env["LOG_DIR"]).glob("train/multiruns/*/.submitit/*/*_submission.sh"), None)
        )
        job_id = script.name.partition("_")[0]
        ready = pauses / "ready"
        for restarts, moment in enumerate(plan, start=1):
            (pauses / "want").write_text(moment)
            wait_for(partial(existing, ready), timeout=180)
            ready.unlink()
            slurm.command("scancel", "--signal=USR1", job_id)
            if moment != "end":
                # Requeued: bounded waits, so a hung job fails the test instead of holding it.
                wait_for(partial(job_restarted, slurm, job_id, restarts), timeout=180)
        assert submitter.wait(timeout=300) == 0, output.read_text()[-5000:]
    finally:
        submitter.kill()
    # submitit hands over a job's result just before its process ends.
    slurm.wait(job_id)
    state = slurm.command("scontrol", "show", "job", job_id).stdout
    assert "JobState=COMPLETED" in state and f"Restarts={len(plan) - 1}" in state, state
    (run_dir,) = (run for run in script.parents[2].iterdir() if run.is_dir() and not run.name.startswith("."))
    return run_dir


def existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def job_restarted(slurm, job_id: str, restarts: int) -> bool | None:
    state = slurm.command("scontrol", "show", "job", job_id).stdout
    return True if f"Restarts={restarts}" in state and "JobState=RUNNING" in state else None


def test_two_node_job_signalled_at_ten_moments_never_hangs_and_ends_like_an_uninterrupted_run(
    installed_project, env, slurm, tmp_path
):
    rng = random.Random()
    # The same job uninterrupted, for comparison.
    reference_logs = tmp_path / "reference"
    run(
        sys.executable, "train.py", "-m", *SLURM, *TWO_NODES, cwd=installed_project,
        env={**env, "LOG_DIR": str(reference_logs)}, timeout=300,
    )  # fmt: skip
    uninterrupted = summary(sweep_dir({"LOG_DIR": str(reference_logs)}) / "0")
    jobs = {}
    for boundaries in (True, False):
        plan = signal_plan(rng, boundaries)
        folder = tmp_path / ("boundaries" if boundaries else "steps")
        folder.mkdir()
        run_dir = signal_job_at(slurm, {**env, "LOG_DIR": str(folder / "logs")}, installed_project, folder, plan)
        jobs[boundaries] = (run_dir, plan)

    for run_dir, plan in jobs.values():
        record = summary(run_dir)
        log = (run_dir / "train.log").read_text()
        # Every requeue resumed in the same folder from the newest requeue checkpoint, of which one is kept.
        # Lightning's own handler (saving inside the signal handler) never ran.
        assert "auto-requeue" not in log
        resumed = re.findall(r"Restoring states from the checkpoint path at (\S+)", log)
        assert resumed == [f"{run_dir}/hpc_ckpt_{n}.ckpt" for n in range(1, len(plan))], (plan, resumed)
        assert [p.name for p in run_dir.glob("hpc_ckpt_*.ckpt")] == [f"hpc_ckpt_{len(plan) - 1}.ckpt"]
        assert record["status"] == "completed", plan
        assert (record["global_step"], record["epoch"]) == (uninterrupted["global_step"], uninterrupted["epoch"])
        # Mid-epoch too: the resumed epoch trains on the batches the checkpoint had not reached
        # (harness/sampling.py), and goes on from the epoch's training totals of each rank (models/classifier.py).
        assert record["metrics"] == uninterrupted["metrics"], plan
