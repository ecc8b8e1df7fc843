"""Multiruns end to end: a grid, an Optuna search killed and resumed, a sweep with a failing job, a sweep
stopped by a signal."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.harness.runs import observed_status
from {{ cookiecutter.package_name }}.harness.sweeps import CSV_NAME, PLOT_NAME, SweepResults

from hydra_plugins.{{ cookiecutter.package_name }}_optuna import OptunaSweeper, search_space

from conftest import CONFIGS, ROOT, TINY, subprocess_env, summary


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, "train.py", *overrides, *TINY]


def run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, env=subprocess_env(tmp_path / "logs"), capture_output=True, text=True, timeout=300
    )


def results(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / CSV_NAME).open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_grid_runs_every_job_in_its_own_folder_and_ranks_them(tmp_path):
    sweep_dir = tmp_path / "grid"
    done = run(
        train_command("-m", "model.optimizer.lr=1e-2,1e-3", "data.batch_size=64,128", f"hydra.sweep.dir={sweep_dir}"),
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(path.parent.name for path in sweep_dir.glob("*/summary.json")) == ["0", "1", "2", "3"]
    rows = results(sweep_dir)
    assert len(rows) == 4
    assert {(row["model.optimizer.lr"], row["data.batch_size"]) for row in rows} == {
        (lr, batch) for lr in ("0.01", "0.001") for batch in ("64", "128")
    }
    assert all(row["status"] == "completed" for row in rows)
    losses = [float(row["val/loss"]) for row in rows]
    assert losses == sorted(losses)
    for row in rows:
        assert summary(Path(row["run_dir"]))["monitor"]["best"] == pytest.approx(float(row["val/loss"]))
    assert (sweep_dir / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = rows[0]
    assert f"best: val/loss={float(best['val/loss']):.6g}" in done.stdout
    assert f"model.optimizer.lr={best['model.optimizer.lr']} data.batch_size={best['data.batch_size']}" in done.stdout


@pytest.mark.slow
def test_optuna_search_resumes_after_being_killed(tmp_path):
    import optuna
    from optuna.trial import TrialState

    command = train_command("hparams_search=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.study_name=killed")
    search_dir = tmp_path / "logs" / "train" / "searches" / "killed"
    first = subprocess.Popen(
        command,
        cwd=ROOT,
        env=subprocess_env(tmp_path / "logs"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    # Kill the whole search, as a lost node or `kill -9` would, while its third trial trains.
    while not (search_dir / "2" / "summary.json").is_file():
        assert first.poll() is None, "the search ended before its third trial started"
        assert time.monotonic() < deadline, "the third trial did not start in time"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # The trial that was cut off had no chance to record it; its process is gone, so readers say killed.
    assert [summary(search_dir / job)["status"] for job in ("0", "1", "2")] == ["completed", "completed", "running"]
    assert observed_status(summary(search_dir / "2")) == "killed"
    started = {job: summary(search_dir / job)["started_at"] for job in ("0", "1")}

    resumed = run(command, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{search_dir / 'optuna.db'}")
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    # The trial that was cut off runs again with its parameters; the others are new.
    assert study.trials[3].params == study.trials[2].params
    completed = [tuple(sorted(trial.params.items())) for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert len(set(completed)) == 4
    # The finished trials were neither re-run nor overwritten; each trial has its own folder.
    assert {job: summary(search_dir / job)["started_at"] for job in ("0", "1")} == started
    assert [summary(search_dir / str(n))["status"] for n in range(5)] == ["completed"] * 2 + ["running"] + [
        "completed"
    ] * 2
    statuses = {row["job"]: row["status"] for row in results(search_dir)}
    assert [statuses[str(n)] for n in range(5)] == ["completed", "completed", "killed", "completed", "completed"]
    assert study.best_value == pytest.approx(
        min(float(row["val/loss"]) for row in results(search_dir) if row["val/loss"])
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_signal_in_a_job_stops_the_sweep_after_its_table(tmp_path, signum):
    sweep_dir = tmp_path / "stopped"
    sender = [
        "+callbacks.signal._target_=signalling.SignalAt",
        f"+callbacks.signal.signum={signum}",
        "+callbacks.signal.phase=train",
        "+callbacks.signal.step=1",
    ]
    done = run(train_command("-m", "model.optimizer.lr=1e-2,1e-3", *sender, f"hydra.sweep.dir={sweep_dir}"), tmp_path)
    # Job 0 stops after a checkpoint, job 1 never starts, and the exit status is the signal's.
    assert done.returncode == 128 + signal.Signals[signum], done.stderr[-3000:]
    (row,) = results(sweep_dir)
    assert (row["job"], row["status"]) == ("0", "interrupted")
    assert (sweep_dir / PLOT_NAME).is_file()
    assert len(list((sweep_dir / "0").glob("hpc_ckpt_*.ckpt"))) == 1
    assert not (sweep_dir / "1").exists()


@pytest.mark.slow
def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep_dir = tmp_path / "failing"
    # lr=1e30 makes the loss NaN within a few steps.
    done = run(
        train_command(
            "-m",
            "model.optimizer.lr=1e-3,1e30",
{%- if cookiecutter.use_wandb == "yes" %}
            "logger=wandb",
{%- endif %}
            f"hydra.sweep.dir={sweep_dir}",
        ),
        tmp_path,
    )
    assert done.returncode != 0
    assert f"1 of 2 jobs failed: see {sweep_dir / CSV_NAME}" in done.stderr
    rows = {row["model.optimizer.lr"]: row for row in results(sweep_dir)}
    assert rows["0.001"]["status"] == "completed" and float(rows["0.001"]["val/loss"]) > 0
    assert rows["1e+30"]["status"] == "failed"
    assert rows["1e+30"]["error"].startswith("NonFiniteLossError")
    assert summary(sweep_dir / "1")["error"] == rows["1e+30"]["error"]
{%- if cookiecutter.use_wandb == "yes" %}
    for job in ("0", "1"):
        resolved = OmegaConf.load(sweep_dir / job / "config_resolved.yaml")
        assert resolved.logger.wandb.group == sweep_dir.name
{%- endif %}

    # The same failure in a single run ends the process with an error.
    single = run(train_command("model.optimizer.lr=1e30"), tmp_path)
    assert single.returncode != 0
    assert "NonFiniteLossError" in single.stderr


def test_example_search_follows_the_monitor_and_the_command_line():
    from hydra import compose, initialize_config_dir
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", ["hparams_search=optuna", "monitor.mode=max"], return_hydra_config=True)
    conf = cfg.hydra.sweeper
    sweeper = OptunaSweeper(conf.storage, conf.study_name, conf.direction, conf.n_trials, conf.n_jobs, conf.sampler)
    assert (sweeper.direction, conf.sampler.seed, cfg.hydra.mode.name) == ("maximize", cfg.seed, "MULTIRUN")

    space, fixed = search_space([*conf.params, "data.batch_size=16", "model.net.dropout=choice(0.0,0.2)", "seed=3"])
    assert space["model.optimizer.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["model.net.dropout"] == CategoricalDistribution(["0.0", "0.2"])
    assert "data.batch_size" not in space
    assert fixed == ["data.batch_size=16", "seed=3"]


def test_results_of_a_sweep_dir(tmp_path):
    """The callback alone, on the folders a sweep leaves: ranking for mode max, categories, failures."""
    jobs = [
        ("adam", 0.9, "completed"),
        ("sgd", 0.7, "completed"),
        ("adamw", None, "failed"),
        ("sgd", 0.95, "completed"),
    ]
    for number, (optimizer, accuracy, status) in enumerate(jobs):
        run_dir = tmp_path / str(number)
        (run_dir / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"model/optimizer={optimizer}", "seed=1"]), run_dir / ".hydra/overrides.yaml")
        record = {"status": status, "run_dir": str(run_dir), "monitor": {"best": accuracy}}
        if status == "failed":
            record["error"] = "ValueError: broken"
        (run_dir / "summary.json").write_text(json.dumps(record))
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}}, "monitor": {"metric": "val/acc", "mode": "max"}}
    )

    with pytest.raises(SystemExit, match="1 of 4 jobs failed"):
        SweepResults().on_multirun_end(config)

    rows = results(tmp_path)
    assert [(row["job"], row["status"]) for row in rows] == [
        ("3", "completed"),
        ("0", "completed"),
        ("1", "completed"),
        ("2", "failed"),
    ]
    assert list(rows[0]) == ["job", "status", "val/acc", "model/optimizer", "overrides", "run_dir", "error"]
    assert rows[3]["error"] == "ValueError: broken"
    assert (tmp_path / PLOT_NAME).stat().st_size > 1000
