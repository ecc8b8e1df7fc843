"""Weights & Biases offline: the run's own files read back, one W&B run per run, nothing left running."""

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import wandb
from wandb.proto import wandb_internal_pb2

from {{ cookiecutter.package_name }}.harness.wandb_run import ID_FILE, choose_id, store_id

from conftest import ROOT, subprocess_env, summary

SECRET = "hunter2-hunter2-hunter2"


def records(run_file: Path):
    """The records of a ``run-<id>.wandb`` file (LevelDB log format: 32 KiB blocks of framed protobufs)."""
    data = run_file.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]  # 1 full, 2 first, 3 middle, 4 last
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(pending)
            pending = b""


def read_run(run_dir: Path) -> dict:
    """History rows, config and run id of the one offline W&B run in ``run_dir``."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    history, config, run_id = [], {}, None
    for record in records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            )
        elif kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            config.update({"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in updates})
            run_id = record.run.run_id if kind == "run" else run_id
    return {"history": history, "config": config, "id": run_id, "bytes": run_file.read_bytes()}


def wandb_children() -> list[str]:
    """W&B processes (wandb-core, its system monitor) started by this long-lived test process."""
    children = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "wandb" in command:
            children.append(command)
    return children


def test_offline_run_holds_history_and_resolved_secret_free_config(make_cfg, train, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)  # a secret in the environment, and in the config under a secret's name
    train(make_cfg("logger=wandb", "debug=limit", f"+hf_token={SECRET}"))
    run_dir = tmp_path / "run"
    run = read_run(run_dir)

    assert run["id"] == (run_dir / ID_FILE).read_text().strip()
    epochs = [row for row in run["history"] if "val/acc" in row]
    assert len(epochs) == 2 and all(0.0 <= row["val/acc"] <= 1.0 for row in epochs)
    assert any("train/loss_step" in row for row in run["history"])
    assert any("test/acc" in row for row in run["history"])

    config = run["config"]
    assert config["model"]["optimizer"]["lr"] == 1e-3
    assert config["paths"]["output_dir"] == str(run_dir)  # ${hydra:...} and ${paths...} resolved
    assert config["trainer"]["max_epochs"] == 2 and config["trainer"]["limit_train_batches"] == 5
    assert "${" not in json.dumps(config)
    assert config["hf_token"] == "<redacted>"
    assert SECRET.encode() not in run["bytes"]


def test_runs_in_one_process_get_their_own_wandb_runs_and_leave_no_process(make_cfg, train, tmp_path):
    """Also after a failure: the second run must not log into the first, and W&B stops with each run."""
    before = wandb_children()
    first, second = tmp_path / "first", tmp_path / "second"
    # Fails at the end of the first validation, long after W&B has started.
    with pytest.raises(Exception, match="val/nope"):
        train(make_cfg("logger=wandb", "debug=limit", "callbacks.model_checkpoint.monitor=val/nope", output_dir=first))
    assert wandb.run is None and wandb_children() == before
    train(make_cfg("logger=wandb", "debug=limit", output_dir=second))
    assert wandb.run is None and wandb_children() == before

    ids = [read_run(run_dir)["id"] for run_dir in (first, second)]
    assert ids[0] != ids[1]
    assert [row["val/acc"] for row in read_run(second)["history"] if "val/acc" in row]


def test_resumed_run_continues_the_same_wandb_run(make_cfg, train, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    train(make_cfg("logger=wandb", "debug=limit", "trainer.max_epochs=1", "test=false", output_dir=first))
    last = first / "checkpoints" / "last.ckpt"
    train(make_cfg("logger=wandb", "debug=limit", f"ckpt_path={last}", "test=false", output_dir=second))

    run_id = (first / ID_FILE).read_text().strip()
    assert (second / ID_FILE).read_text().strip() == run_id
    assert read_run(second)["id"] == run_id
    assert [row["epoch"] for row in read_run(second)["history"] if "val/acc" in row] == [1]


def test_run_id_order(tmp_path):
    own, earlier = tmp_path / "own", tmp_path / "earlier"
    (earlier / "checkpoints").mkdir(parents=True)
    checkpoint = earlier / "checkpoints" / "last.ckpt"
    checkpoint.touch()
    store_id(earlier, "earlier1")

    fresh = choose_id(None, own, None)
    assert len(fresh) == 8 and fresh.isalnum() and fresh != choose_id(None, own, None)
    assert choose_id(None, own, checkpoint) == "earlier1"
    assert choose_id(None, own, "hpc") != "earlier1"  # Lightning's keywords name no run directory
    store_id(own, "requeued")
    assert choose_id(None, own, checkpoint) == "requeued"  # a requeued job keeps its own run
    assert choose_id("byhand12", own, checkpoint) == "byhand12"


def test_disabled_mode_writes_nothing(make_cfg, train, tmp_path):
    train(make_cfg("logger=wandb", "logger.wandb.mode=disabled", "debug=limit", "trainer.max_epochs=1", "test=false"))
    assert summary(tmp_path / "run")["status"] == "completed"
    assert not list((tmp_path / "run").glob("wandb/*run-*"))


@pytest.mark.slow
def test_only_rank_zero_logs_in_ddp(tmp_path):
    """Two gloo processes started by Lightning: one W&B run and one TensorBoard writer, both in rank 0."""
    env = subprocess_env(tmp_path)
    command = [sys.executable, "train.py", "trainer=ddp_cpu", "logger=many", "debug=limit", "test=false"]
    command += ["callbacks.validation_images.every_n_epochs=1", "callbacks.progress_bar=null"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    run = read_run(run_dir)
    assert run["id"] == (run_dir / ID_FILE).read_text().strip()
    assert sum("val/confusion_matrix/_type" in row for row in run["history"]) == 2
    writers = {path.name.rsplit(".", 2)[1] for path in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1, "TensorBoard files from more than one process"


@pytest.mark.parametrize("wandb_first", [False, True], ids=["wandb-imported-after", "wandb-imported-before"])
def test_console_capture_gets_redacted_text(tmp_path, wandb_first):
    """Whichever is installed first, W&B's console capture or the redaction, W&B records redacted text."""
    order = ["import wandb", "redact_output()"]
    script = "\n".join(
        [
            "import sys",
            "from {{ cookiecutter.package_name }}.harness.secret_env import redact_output",
            *(order if wandb_first else order[::-1]),
            f"run = wandb.init(mode='offline', dir={str(tmp_path)!r})",
            f"print('printed', {SECRET!r})",
            f"sys.stderr.write('written {SECRET}\\n')",
            "run.finish()",
        ]
    )
    env = subprocess_env(tmp_path, HF_TOKEN=SECRET)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    (console,) = tmp_path.glob("wandb/offline-run-*/files/output.log")
    assert "printed <redacted>" in console.read_text() and "written <redacted>" in console.read_text()
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]
