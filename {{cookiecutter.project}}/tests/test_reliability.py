"""Reliability: bad input fails fast, checkpoints survive kills and NaN stops cleanly (secrets: test_secrets.py).

The slow tests start ``train.py`` as a real process (and SIGKILL it); the others train in process.
"""

import logging
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning import Callback

from {{ cookiecutter.package_name }}.harness.callbacks import NonFiniteLossError

from conftest import ROOT, subprocess_env, summary

# A short deterministic run: a few batches per epoch.
SHORT = [
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
]
# ... without a logger or a test phase.
QUIET = [*SHORT, "logger=none", "test=false"]


def only_run_dir(log_dir: Path) -> Path:
    (run_dir,) = (log_dir / "train" / "runs").iterdir()
    return run_dir


# --- Bad overrides fail before anything heavy runs -------------------------------------------

# Runs train.py as ``python train.py`` does, then reports whether torch was imported on the way out.
PROBE = """
import runpy, sys
sys.argv = ["train.py", *sys.argv[1:]]
try:
    runpy.run_path("train.py", run_name="__main__")
finally:
    print("torch imported:", "torch" in sys.modules)
"""

BAD_OVERRIDES = {
    "typo": (["trainer.max_epoch=3"], ["trainer.max_epoch", "Did you mean trainer.max_epochs?", "+trainer.max_epoch"]),
    "type": (["data.batch_size=abc"], ["data.batch_size", "an integer", "'abc'"]),
    "not positive": (["data.batch_size=0"], ["data.batch_size", "at least 1"]),
    "bool": (["test=maybe"], ["test", "true or false"]),
    "group option": (["model=resnet9000"], ["model=resnet9000", "Available: cnn, mlp"]),
    "close option": (["model=mpl"], ["Did you mean model=mlp?"]),
    "swept value": (["-m", "model.optimizer.lr=1e-3,fast"], ["model.optimizer.lr", "a number", "'fast'"]),
    "syntax": (["tags=[a"], ["tags=[a", "override_grammar"]),
    "slurm without sbatch": (["-m", "hydra/launcher=submitit_slurm"], ["sbatch", "not on PATH", "cluster=local"]),
    "gpu without gpu": (["trainer=gpu"], ["trainer=gpu", "no NVIDIA GPU", "trainer=cpu"]),
}


@pytest.mark.parametrize("case", BAD_OVERRIDES)
def test_bad_override_fails_fast_saying_what_to_do(tmp_path, case):
    overrides, expected = BAD_OVERRIDES[case]
    if case == "gpu without gpu" and (Path("/proc/driver/nvidia/gpus").is_dir() or shutil.which("nvidia-smi")):
        pytest.skip("this machine has a GPU")
    if case == "slurm without sbatch":
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # No sbatch on PATH (CI installs SLURM); the interpreter is called by its full path.
    env = subprocess_env(tmp_path / "logs", PATH=str(tmp_path))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "torch imported: False" in result.stdout
    assert elapsed < 3, f"took {elapsed:.1f} s"
    assert not (tmp_path / "logs").exists(), "a run folder was created"


def test_slurm_cluster_without_sbatch_says_what_to_do(tmp_path):
    if not (ROOT / "configs" / "cluster" / "slurm.yaml").is_file():
        pytest.skip("baked without SLURM presets")
    env = subprocess_env(tmp_path / "logs", PATH=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "train.py", "-m", "cluster=slurm"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "cluster=slurm submits jobs with sbatch" in result.stderr, result.stderr
    assert not (tmp_path / "logs").exists()


def test_more_gpus_than_the_machine_has_says_how_many_there_are(monkeypatch):
    from {{ cookiecutter.package_name }}.harness import checks

    # The driver's answer, as on a machine with one GPU.
    monkeypatch.setattr(checks, "count_nvidia_gpus", lambda: 1)
    checks.check_overrides(ROOT / "configs", "train", ["trainer=gpu"])
    with pytest.raises(checks.BadOverride, match=r"trainer.devices=4, but this machine has 1 GPU.*trainer.devices=1"):
        checks.check_overrides(ROOT / "configs", "train", ["trainer=gpu", "trainer.devices=4"])


def test_good_overrides_pass_the_checks(tmp_path):
    from {{ cookiecutter.package_name }}.harness.checks import check_overrides

    check_overrides(
        ROOT / "configs",
        "train",
        ["model=cnn", "trainer.devices=auto", "trainer.max_epochs=3", "+extra=1", "model.optimizer.lr=1e-3,1e-4"],
        multirun=True,
    )


# --- Crash safety ----------------------------------------------------------------------------

WRITER = """
import sys, torch
from {{ cookiecutter.package_name }}.harness.checkpointing import AtomicCheckpointIO
print("ready", flush=True)
AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(60_000_000)}, sys.argv[1])
"""


@pytest.mark.slow
def test_a_killed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    from {{ cookiecutter.package_name }}.harness.checkpointing import AtomicCheckpointIO

    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(3)}, last)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(last)], env=subprocess_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 1_000_000 for p in last.parent.glob(".last.ckpt.*.tmp")):
        assert writer.poll() is None and time.monotonic() < deadline, "the write ended before it could be killed"
        time.sleep(0.002)
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    assert torch.equal(torch.load(last, weights_only=True)["weights"], torch.zeros(3))
    (leftover,) = last.parent.glob(".*.tmp")
    assert not leftover.name.endswith(".ckpt")
    # The next save into the folder removes what the killed write left behind.
    AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(3)}, last.parent / "other.ckpt")
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt", "other.ckpt"]


@pytest.mark.slow
def test_kill_9_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    # Dropout draws from the global generator: the checkpoint must restore it, and the shuffle must match.
    # The kill lands after at most 4 of the 10 epochs (+0.2 s), while the run still trains even on a fast machine.
    overrides = ["trainer.max_epochs=10", "model.net.dropout=0.1", *QUIET]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = subprocess.Popen([sys.executable, "train.py", *overrides], cwd=ROOT, env=subprocess_env(straight))

    run = subprocess.Popen(
        [sys.executable, "train.py", *overrides],
        cwd=ROOT,
        env=subprocess_env(killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill at a random point: after a random number of checkpoint saves, plus a random delay.
    rng = random.Random()
    saves, delay = rng.randint(1, 4), rng.uniform(0, 0.2)
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while len(seen) < saves:
        assert run.poll() is None and time.monotonic() < deadline, f"finished before {saves} saves"
        last = list(killed.glob("train/runs/*/checkpoints/last.ckpt"))
        if last:
            # os.replace gives every save a new inode.
            seen.add(last[0].stat().st_ino)
        time.sleep(0.005)
    time.sleep(delay)
    assert run.poll() is None, f"finished before the kill ({saves} saves + {delay:.3f} s)"
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_dir = only_run_dir(killed)
    assert summary(killed_dir)["status"] == "running"
    torch.load(killed_dir / "checkpoints" / "last.ckpt", weights_only=True)

    subprocess.run(
        [sys.executable, "train.py", *overrides, "ckpt_path=last"], cwd=ROOT, env=subprocess_env(killed), check=True
    )
    assert uninterrupted.wait(timeout=300) == 0
    (resumed_dir,) = {p for p in (killed / "train" / "runs").iterdir()} - {killed_dir}
    expected, resumed = summary(only_run_dir(straight)), summary(resumed_dir)
    assert resumed["status"] == "completed"
    assert resumed["global_step"] == expected["global_step"] == 10 * 6
    assert resumed["metrics"] == expected["metrics"], f"killed after {saves} saves + {delay:.3f} s"


# --- NaN loss --------------------------------------------------------------------------------


class PoisonWeights(Callback):
    """Sets a weight to NaN before global step ``at_step``: from then on the loss is NaN."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")


@pytest.mark.parametrize("read_every_step", ["null", "false"], ids=["read at once", "deferred as on a GPU"])
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_cfg, train, tmp_path, read_every_step):
    # 6 steps per epoch: the 9th step (epoch 1) is the first with a NaN loss. On a CPU it is read at
    # once; deferred, checked every 4 steps, it is found at step 12. Either way before the checkpoint of epoch 1.
    overrides = [o for o in QUIET if not o.startswith("trainer.log_every_n_steps")]
    cfg = make_cfg(
        *overrides,
        f"callbacks.finite_loss.read_every_step={read_every_step}",
        "trainer.log_every_n_steps=4",
        "trainer.max_epochs=3",
        "+callbacks.poison._target_=test_reliability.PoisonWeights",
        "+callbacks.poison.at_step=8",
    )
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at global step 9 \(epoch 1\)") as error:
        train(cfg)
    assert "model.optimizer.lr" in str(error.value) and "gradient_clip_val" in str(error.value)
    record = summary(tmp_path / "run")
    assert record["status"] == "failed" and "global step 9" in record["error"]
    # Where the run stopped tells the two modes apart.
    assert record["global_step"] == (9 if read_every_step == "null" else 12)
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["epoch000-step000006.ckpt", "last.ckpt"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert str(last) in str(error.value)
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 6
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())


# --- Retention and safe loading --------------------------------------------------------------


def test_retention_keeps_top_k_plus_last(make_cfg, train, tmp_path):
    train(make_cfg("trainer.max_epochs=5", "callbacks.model_checkpoint.save_top_k=2", *QUIET))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert len(names) == 3 and "last.ckpt" in names, names


class Untrusted:
    """Anything that is not a tensor or a plain value: unpickling it could run code."""


def test_checkpoints_load_with_weights_only_unless_trusted(make_cfg, train, tmp_path):
    train(make_cfg("trainer.max_epochs=1", *QUIET, output_dir=tmp_path / "first"))
    state = torch.load(tmp_path / "first" / "checkpoints" / "last.ckpt", weights_only=True)
    state["untrusted"] = Untrusted()
    tampered = tmp_path / "tampered.ckpt"
    torch.save(state, tampered)

    with pytest.raises(Exception, match="Weights only load failed"):
        train(make_cfg("trainer.max_epochs=2", f"ckpt_path={tampered}", *QUIET, output_dir=tmp_path / "refused"))
    train(
        make_cfg(
            "trainer.max_epochs=2",
            f"ckpt_path={tampered}",
            "ckpt_weights_only=false",
            *QUIET,
            output_dir=tmp_path / "trusted",
        )
    )
    assert summary(tmp_path / "trusted")["global_step"] == 2 * 6


# --- Bookkeeping never stops training --------------------------------------------------------


class BrokenPlot(Callback):
    bookkeeping = True

    def on_validation_end(self, trainer, pl_module):
        raise RuntimeError("plotting failed")


class LoggerFolderVanishes(Callback):
    """At the start of epoch 1 the CSV logger's folder becomes a file: nothing can be written there."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            folder = Path(trainer.default_root_dir) / "csv"
            shutil.rmtree(folder)
            folder.write_text("not a folder")


def test_failing_bookkeeping_is_reported_and_training_goes_on(make_cfg, train, tmp_path, caplog):
    cfg = make_cfg(
        "trainer.max_epochs=3",
        *SHORT,
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=2",
        "+callbacks.broken_plot._target_=test_reliability.BrokenPlot",
        "+callbacks.vanishing._target_=test_reliability.LoggerFolderVanishes",
    )
    with caplog.at_level(logging.ERROR):
        train(cfg)
    record = summary(tmp_path / "run")
    assert record["status"] == "completed" and record["global_step"] == 3 * 6
    assert "test/acc" in record["metrics"]
    errors = record["bookkeeping_errors"]
    # One sanity check + three epochs of validation.
    assert errors["callback broken_plot.on_validation_end"] == {"count": 4, "error": "RuntimeError: plotting failed"}
    assert any(where.startswith("logger csv.") for where in errors), errors
    assert "callback broken_plot.on_validation_end failed; training goes on" in caplog.text


class BrokenEssential(Callback):
    def on_validation_end(self, trainer, pl_module):
        raise RuntimeError("essential step failed")


def test_a_failing_essential_callback_still_stops_the_run(make_cfg, train, tmp_path):
    cfg = make_cfg("trainer.max_epochs=1", *QUIET, "+callbacks.essential._target_=test_reliability.BrokenEssential")
    with pytest.raises(RuntimeError, match="essential step failed"):
        train(cfg)
    assert summary(tmp_path / "run")["status"] == "failed"
