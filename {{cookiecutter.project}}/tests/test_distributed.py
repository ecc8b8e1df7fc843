"""Distributed runs for real: gloo processes on CPU, started by Lightning and by torchrun.

The slow tests start ``train.py`` as real processes with ``probe.ProbedDigits`` as the data
module, which reports what every rank saw (see probe.py).
"""

import json
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.harness import distributed, resolvers

from conftest import CONFIGS, ROOT, subprocess_env, summary

# Digits leave 1438 examples for fitting; a val_fraction of 0.105 takes 151 of them, an odd number:
# two ranks get 76 and 75, and with batches of 25 they run 4 and 3 validation batches.
UNEVEN_VALIDATION = ("data.val_fraction=0.105", "data.eval_batch_size=25")
SHORT = ("trainer.max_epochs=2", "trainer.limit_train_batches=3", "test=false", "callbacks.progress_bar=null")


def process_env(tmp_path: Path) -> dict:
    probes = tmp_path / "probes"
    probes.mkdir(exist_ok=True)
    return subprocess_env(tmp_path / "logs", PROBE_DIR=str(probes))


def run_train(*overrides: str, env: dict, expect_ok: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", *overrides, "data._target_=probe.ProbedDigits"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if expect_ok and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def probes(env: dict) -> tuple[list[dict], int]:
    """Each rank's view of the run, by global rank, and how often prepare_data ran."""
    folder = Path(env["PROBE_DIR"])
    views = [json.loads(path.read_text()) for path in sorted(folder.glob("rank*.json"))]
    return sorted(views, key=lambda view: view["global_rank"]), len(list(folder.glob("prepare_data-*")))


def assert_one_run(views: list[dict], world_size: int) -> None:
    """Every rank trained in the same run folder, with the same configuration."""
    assert [view["global_rank"] for view in views] == list(range(world_size))
    for view in views[1:]:
        for key in ("world_size", "run_dir", "overrides", "data", "model"):
            assert view[key] == views[0][key], key
    assert views[0]["world_size"] == world_size


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_lightning_launcher_one_run_dir_and_exact_validation(tmp_path):
    """``python train.py trainer=ddp_cpu``: Lightning re-runs train.py for rank 1, into rank 0's folder."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from pytorch_lightning import Trainer

    from {{ cookiecutter.package_name }}.models import Classifier

    env = process_env(tmp_path)
    run_train("trainer=ddp_cpu", *UNEVEN_VALIDATION, *SHORT, env=env)

    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    views, prepare_calls = probes(env)
    assert_one_run(views, world_size=2)
    assert views[0]["run_dir"] == str(run_dir)
    assert prepare_calls == 1, "prepare_data runs once per node, on local rank 0"
    # Every validation example is seen once, by exactly one rank: 76 + 75, nothing repeated.
    assert [len(view["val_indices"]) for view in views] == [76, 75]
    assert sorted(views[0]["val_indices"] + views[1]["val_indices"]) == list(range(151))
    # Lightning put its DistributedSampler inside our TensorBatchSampler: in each epoch (3 batches) the
    # ranks train on full batches of different examples, and each epoch comes in a new order.
    batch_size = views[0]["data"]["batch_size"]
    for epoch in range(2):
        epoch_batches = slice(3 * epoch, 3 * epoch + 3)
        rank0, rank1 = ({i for batch in view["train_batches"][epoch_batches] for i in batch} for view in views)
        assert len(rank0) == len(rank1) == 3 * batch_size and not rank0 & rank1
    assert views[0]["train_batches"][:3] != views[0]["train_batches"][3:]

    record = summary(run_dir)
    assert record["status"] == "completed"
    assert record["global_step"] == 6
    assert {path.name for path in (run_dir / "checkpoints").iterdir()} == {
        Path(record["best_checkpoint"]).name,
        "last.ckpt",
    }
    # Event files are named ...<host>.<pid>.<n>: all of them come from one process, rank 0.
    writers = {path.name.rsplit(".", 2)[1] for path in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1
    assert (run_dir / "config_resolved.yaml").is_file()
    # Rank 1 runs train.py with extra overrides from Lightning; had it written its record, they would show.
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert not any(argument.startswith("hydra.") for argument in provenance["command"])

    # The last checkpoint holds the weights of the last validation: evaluated in one process,
    # it must give the metrics that the two ranks computed together.
    model = Classifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    cfg.data._target_ = "{{ cookiecutter.package_name }}.data.DigitsDataModule"
    datamodule = instantiate(cfg.data)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    (single,) = trainer.validate(model, datamodule=datamodule)
    assert len(datamodule.datasets["val"]) == 151
    for metric in ("val/loss", "val/acc"):
        assert record["metrics"][metric] == pytest.approx(single[metric], rel=1e-6, abs=1e-7), metric
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def exact_losses(checkpoint: Path, cfg) -> dict[str, float]:
    """Mean cross-entropy over every validation and test example, in one process, without Lightning's loops."""
    import torch
    from hydra.utils import instantiate

    from {{ cookiecutter.package_name }}.models import Classifier

    model = Classifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    losses = {}
    for stage, split in (("val", "val"), ("test", "test")):
        images, labels = datamodule.on_after_batch_transfer(datamodule.datasets[split].tensors, 0)
        with torch.no_grad():
            losses[f"{stage}/loss"] = torch.nn.functional.cross_entropy(model(images), labels).item()
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_validation_and_test_losses_are_exact_on_any_number_of_processes(tmp_path, processes):
    """151 validation and 359 test examples in batches of 25: shards of unequal size and a last, small batch."""
    from omegaconf import OmegaConf

    env = process_env(tmp_path)
    overrides = ("trainer.max_epochs=1", "trainer.limit_train_batches=3", "callbacks.progress_bar=null", "logger=none")
    run_train("trainer=ddp_cpu", f"trainer.devices={processes}", *UNEVEN_VALIDATION, *overrides, env=env)
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    record = summary(run_dir)
    assert record["status"] == "completed"
    # One epoch: the one checkpoint holds the weights that were validated and tested.
    assert record["best_checkpoint"] and Path(record["last_checkpoint"]).is_file()
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    cfg.data._target_ = "{{ cookiecutter.package_name }}.data.DigitsDataModule"
    for metric, exact in exact_losses(Path(record["last_checkpoint"]), cfg).items():
        assert record["metrics"][metric] == pytest.approx(exact, rel=1e-5), metric


@pytest.mark.slow
@pytest.mark.parametrize(("per_node", "prepare_calls"), [("true", 2), ("false", 1)])
def test_torchrun_two_node_groups_train_one_model(tmp_path, per_node, prepare_calls):
    """Two torchrun node groups on localhost (one process each) meet over gloo and share one run folder."""
    env = {**process_env(tmp_path), "MASTER_ADDR": "127.0.0.1"}
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    overrides = [
        "trainer=multinode",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        f"data.prepare_data_per_node={per_node}",
        *UNEVEN_VALIDATION,
        *SHORT,
    ]
    nodes = []
    for node_rank in range(2):
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"),
            *(f"--node-rank={node_rank}", "--master-addr=127.0.0.1", f"--master-port={port}", f"--rdzv-id={run_id}"),
            *("train.py", "data._target_=probe.ProbedDigits", *overrides),
        ]
        nodes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        outputs = [node.communicate(timeout=300)[0].decode(errors="replace") for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-6000:]

    run_dir = tmp_path / "logs" / "train" / "runs" / run_id
    assert list(run_dir.parent.iterdir()) == [run_dir], "the id from --rdzv-id names the one run folder"
    views, calls = probes(env)
    assert_one_run(views, world_size=2)
    assert [view["node_rank"] for view in views] == [0, 1]
    assert views[0]["run_dir"] == str(run_dir)
    assert calls == prepare_calls
    record = summary(run_dir)
    assert record["status"] == "completed" and record["global_step"] == 6


def test_multirun_with_lightning_launcher_is_refused(tmp_path):
    env = process_env(tmp_path)
    result = run_train("-m", "trainer=ddp_cpu", "model.optimizer.lr=1e-3,1e-2", *SHORT, env=env, expect_ok=False)
    assert result.returncode == 2 and result.stderr.startswith("error: -m (multirun) cannot drive"), result.stderr
    assert "every process Lightning starts would run the whole sweep again" in result.stderr
    assert "cluster=slurm" in result.stderr and "torchrun" in result.stderr
    # Refused before any work: no rank was started, no data prepared, no sweep or job folder made.
    assert probes(env) == ([], 0)
    assert not (tmp_path / "logs").exists()


def test_no_config_builds_a_path_from_the_job_name():
    """Lightning's launcher names the job of each rank it starts ``train_ddp_process_<k>``."""
    users = [path.name for path in CONFIGS.rglob("*.yaml") if re.search(r"hydra[.:]job\.name", path.read_text())]
    assert users == [], "use task_name: hydra.job.name differs between the ranks of one run"


LIGHTNING_CHILD = {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}
TORCHRUN = {"TORCHELASTIC_RUN_ID": "abc", "GROUP_RANK": "0", "LOCAL_RANK": "0"}
SRUN = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train", "SLURM_LOCALID": "0"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        # Lightning's launcher: the process that re-ran train.py, and the first process of node 1.
        (LIGHTNING_CHILD, False),
        ({"NODE_RANK": "1"}, False),
        # Lightning's launcher inside an interactive allocation, which sets SLURM_PROCID=0 for every process.
        ({**LIGHTNING_CHILD, "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "bash", "SLURM_PROCID": "0"}, False),
        ({**TORCHRUN, "RANK": "0"}, True),
        ({**TORCHRUN, "RANK": "2", "GROUP_RANK": "1"}, False),
        # torchrun started by srun: torchrun numbers the ranks, whatever SLURM_PROCID says.
        ({**TORCHRUN, **SRUN, "RANK": "1", "SLURM_PROCID": "0"}, False),
        ({**TORCHRUN, **SRUN, "RANK": "0", "SLURM_PROCID": "1"}, True),
        ({**SRUN, "SLURM_PROCID": "0"}, True),
        ({**SRUN, "SLURM_PROCID": "2", "SLURM_NODEID": "1"}, False),
    ],
)
def test_global_zero_under_each_launcher(monkeypatch, env, expected):
    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert distributed.is_global_zero() is expected


@pytest.fixture
def launcher_env(monkeypatch):
    """A clean slate for the run id: no launcher variables, no cached ids."""
    for variable in ("RUN_ID", "SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(variable, raising=False)
    for cached in (resolvers.run_id, resolvers.run_name):
        cached.cache_clear()
    yield monkeypatch
    for cached in (resolvers.run_id, resolvers.run_name):
        cached.cache_clear()


def test_run_name_has_a_timestamp_when_started_alone(launcher_env):
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", resolvers.run_name())


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TORCHELASTIC_RUN_ID": "exp-7"}, "exp-7"),
        ({"TORCHELASTIC_RUN_ID": "none", "RUN_ID": "mine"}, "mine"),
        ({"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8"}, "4242"),
        (
            {"SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2", "SLURM_NTASKS": "1"},
            "4240_2",
        ),
    ],
)
def test_run_name_under_a_launcher_is_its_id_alone(launcher_env, env, name):
    """Ranks compose the config seconds apart: no clock in the name, so they all find the same folder."""
    for variable, value in env.items():
        launcher_env.setenv(variable, value)
    assert resolvers.run_name() == name


def test_torchrun_without_rdzv_id_is_refused(launcher_env):
    launcher_env.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ValueError, match="--rdzv-id"):
        resolvers.run_name()
