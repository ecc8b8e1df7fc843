"""cluster=slurm and its presets as the launcher receives them, and the requeue checkpoint; no SLURM needed."""

import importlib

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.harness.checks import BadValue, check_resources
from {{ cookiecutter.package_name }}.harness.requeue import resume_path

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from conftest import CONFIGS


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    return cfg, OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_job_has_one_task_per_rank():
    _, launcher = composed("cluster=slurm", "trainer=ddp_cpu", "trainer.devices=3", "trainer.num_nodes=2")
    assert (launcher["nodes"], launcher["tasks_per_node"]) == (2, 3)
    module, _, name = launcher["_target_"].rpartition(".")
    # Compared by name: Hydra's plugin scan may import the launcher module a second time.
    bases = {f"{c.__module__}.{c.__qualname__}" for c in getattr(importlib.import_module(module), name).__mro__}
    assert f"{SlurmLauncher.__module__}.{SlurmLauncher.__qualname__}" in bases
    # Lightning, not submitit (SIGUSR2), catches the signal before the time limit and requeues.
    assert launcher["additional_parameters"] == {"signal": "USR1@120", "requeue": True}


def test_slurm_needs_a_number_of_devices():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["cluster=slurm", "trainer=ddp"], return_hydra_config=True)
    with pytest.raises(BadValue, match=r"trainer.devices=auto: SLURM starts one task per device"):
        check_resources(cfg, multirun=True)


def test_hpc_preset_builds_on_slurm():
    cfg, launcher = composed("cluster=hpc_a100", "trainer.num_nodes=3", "hydra.launcher.signal_delay_s=300")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (3, 4, 4)
    assert launcher["additional_parameters"]["signal"] == "USR1@300"
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")


def test_workstation_runs_here():
    cfg, launcher = composed("cluster=workstation")
    assert launcher["_target_"].endswith("BasicLauncher")
    assert cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize("ckpt_path", [None, "given.ckpt"])
def test_requeue_checkpoint_wins_and_only_the_newest_stays(tmp_path, ckpt_path):
    assert resume_path(ckpt_path, tmp_path) == ckpt_path
    for n in (1, 2, 10):
        (tmp_path / f"hpc_ckpt_{n}.ckpt").touch()
    assert resume_path(ckpt_path, tmp_path) == "hpc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpc_ckpt_10.ckpt"]


def test_a_job_requeued_without_a_requeue_checkpoint_continues_from_its_last(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").touch()
    assert resume_path(None, tmp_path) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume_path(None, tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
