"""Reliability: bad input fails fast, checkpoints survive kills and NaN stops cleanly (secrets: test_secrets.py).

The slow tests start ``train.py`` as a real process (and SIGKILL it); the others train in process.
"""

import logging
import os
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
from {{ cookiecutter.package_name }}.harness.runs import observed_status

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


# --- Bad values fail before anything heavy runs ----------------------------------------------

# Runs train.py as ``python train.py`` does, then reports whether torch was imported on the way out.
PROBE = """
import runpy, sys
sys.argv = ["train.py", *sys.argv[1:]]
try:
    runpy.run_path("train.py", run_name="__main__")
finally:
    print("torch imported:", "torch" in sys.modules)
"""

# Refused by the checks before a run (harness/checks.py): one line, exit status 2. ``{tmp}`` is the test's folder.
BAD_VALUES = {
    "type": (["data.batch_size=abc"], ["data.batch_size", "an integer", "'abc'"]),
    "not positive": (["data.batch_size=0"], ["data.batch_size", "at least 1"]),
    "bool": (["test=maybe"], ["test", "true or false"]),
    "swept value": (["-m", "model.optimizer.lr=1e-3,fast"], ["model.optimizer.lr", "a number", "'fast'"]),
    "swept value out of range": (["-m", "model.optimizer.lr=1e-3,-1"], ["model.optimizer.lr", "> 0", "not -1"]),
    "log every 0 steps": (["trainer.log_every_n_steps=0"], ["trainer.log_every_n_steps", "at least 1"]),
    "no epochs": (["trainer.max_epochs=0"], ["trainer.max_epochs", "at least 1"]),
    "no training batches": (["trainer.limit_train_batches=0"], ["trainer.limit_train_batches", "(0, 1]"]),
    "no devices": (["trainer.devices=0"], ["trainer.devices", ">= 1"]),
    "validation fraction above 1": (["data.val_fraction=1.5"], ["data.val_fraction", "between 0 and 1"]),
    "no validation examples": (["data.val_fraction=0"], ["data.val_fraction", "between 0 and 1"]),
    "dropout": (["model.net.dropout=1.5"], ["model.net.dropout", "probability"]),
    "monitor mode": (["monitor.mode=maximum"], ["monitor.mode", "one of min, max"]),
    "task name leaves log_dir": (["task_name=../../../escaped"], ["task_name", "a folder name"]),
    "checkpoint is text": (["ckpt_path={tmp}/notes.txt"], ["notes.txt", "not a checkpoint"]),
    "checkpoint is empty": (["ckpt_path={tmp}/empty.ckpt"], ["empty.ckpt", "an empty file"]),
    "no such checkpoint": (["ckpt_path={tmp}/nothing.ckpt"], ["nothing.ckpt", "no such file", "ckpt_path=last"]),
    "nothing to resume": (["ckpt_path=last"], ["ckpt_path=last: no checkpoint under", "Train once"]),
    "slurm without sbatch": (["-m", "hydra/launcher=submitit_slurm"], ["sbatch", "not on PATH", "cluster=local"]),
    "search on slurm without sbatch": (["hparams_search=optuna", "cluster=slurm"], ["cluster=slurm", "sbatch"]),
    # The search's jobs would run on GPU nodes: what is missing on this login node is sbatch, not a GPU.
    "search on the HPC preset": (["hparams_search=optuna", "cluster=hpc_a100"], ["cluster=hpc_a100", "sbatch"]),
    "gpu without gpu": (["trainer=gpu"], ["trainer=gpu", "no NVIDIA GPU", "trainer=cpu"]),
    "ddp under -m": (["-m", "trainer=ddp_cpu"], ["-m (multirun) cannot drive", "2 process(es)", "torchrun"]),
}
# Refused by Hydra itself, as it composes the config: unknown keys and options, malformed overrides.
HYDRA_REFUSALS = {
    "typo": (["trainer.max_epoch=3"], ["trainer.max_epoch", "+trainer.max_epoch=3"]),
    "group option": (["model=resnet9000"], ["model/resnet9000", "cnn", "mlp"]),
    "syntax": (["tags=[a"], ["'[a'", "override_grammar"]),
}
NEEDS = {
    "gpu without gpu": "no GPU",
    "slurm without sbatch": "submitit",
    "search on slurm without sbatch": "slurm",
    "search on the HPC preset": "slurm",
}


def run_probe(tmp_path: Path, *overrides: str, **env: str) -> subprocess.CompletedProcess:
    # No sbatch on PATH (CI installs SLURM); the interpreter is called by its full path.
    environment = subprocess_env(tmp_path / "logs", PATH=str(tmp_path), **env)
    command = [sys.executable, "-c", PROBE, *(o.format(tmp=tmp_path) for o in overrides)]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def skip_unless_possible(case: str) -> None:
    need = NEEDS.get(case)
    if need == "no GPU" and (Path("/proc/driver/nvidia/gpus").is_dir() or shutil.which("nvidia-smi")):
        pytest.skip("this machine has a GPU")
    if need == "submitit":
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if need == "slurm" and not (ROOT / "configs" / "cluster" / "slurm.yaml").is_file():
        pytest.skip("baked without SLURM presets")


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_value_fails_at_once_saying_what_to_do(tmp_path, case):
    overrides, expected = BAD_VALUES[case]
    skip_unless_possible(case)
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "empty.ckpt").touch()
    result = run_probe(tmp_path, *overrides)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for text in expected:
        assert text.format(tmp=tmp_path) in result.stderr, result.stderr
    assert "torch imported: False" in result.stdout
    assert not (tmp_path / "logs").exists(), "a run or sweep folder was created"


@pytest.mark.parametrize("case", HYDRA_REFUSALS)
def test_unknown_keys_and_options_are_refused_by_hydra(tmp_path, case):
    overrides, expected = HYDRA_REFUSALS[case]
    result = run_probe(tmp_path, *overrides)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "torch imported: False" in result.stdout
    assert not (tmp_path / "logs").exists()


def test_torchrun_without_rdzv_id_is_refused_in_one_line(tmp_path):
    result = run_probe(tmp_path, TORCHELASTIC_RUN_ID="none", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "torchrun was started without --rdzv-id" in result.stderr and "RUN_ID=" in result.stderr


# Runs train.py's command line up to the task, which only reports that it was called.
STOP_AT_TASK = """
import os, sys
sys.argv = ["train.py", *sys.argv[1:]]
script = os.path.abspath("train.py")
source = open(script).read().replace('if __name__ == "__main__":', "if False:")
module = {"__name__": "__main__", "__file__": script}
exec(compile(source, script, "exec"), module)
module["train"] = lambda cfg: print("job", cfg.model.optimizer.lr, flush=True)
module["main"]()
"""


def test_good_values_pass_the_checks(tmp_path):
    overrides = ["model=cnn", "trainer.devices=auto", "+extra=1", "model.optimizer.lr=1e-3,1e-4"]
    result = subprocess.run(
        [sys.executable, "-c", STOP_AT_TASK, "-m", *overrides],
        cwd=ROOT,
        env=subprocess_env(tmp_path / "logs"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("job")] == ["job 0.001", "job 0.0001"]


def test_more_gpus_than_the_machine_has_says_how_many_there_are(monkeypatch):
    from hydra import compose, initialize_config_dir

    from {{ cookiecutter.package_name }}.harness import checks

    # The driver's answer, as on a machine with one GPU.
    monkeypatch.setattr(checks, "count_nvidia_gpus", lambda: 1)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        one, four = (
            compose("train", overrides=["trainer=gpu", *more], return_hydra_config=True)
            for more in ([], ["trainer.devices=4"])
        )
    checks.check_resources(one, multirun=False)
    with pytest.raises(checks.BadValue, match=r"trainer.devices=4, but this machine has 1 GPU.*trainer.devices=1"):
        checks.check_resources(four, multirun=False)


@pytest.mark.slow
def test_a_new_run_never_overwrites_an_earlier_one(tmp_path):
    env = subprocess_env(tmp_path / "logs", RUN_ID="fixed")
    subprocess.run([sys.executable, "train.py", *QUIET, "trainer.max_epochs=1"], cwd=ROOT, env=env, check=True)
    run_dir = tmp_path / "logs" / "train" / "runs" / "fixed"
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    again = subprocess.run(
        [sys.executable, "train.py", *QUIET, "trainer.max_epochs=2"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert again.returncode == 2 and again.stderr.startswith("error: RUN_ID=fixed names an earlier run"), again.stderr
    assert "ckpt_path=last" in again.stderr
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


def test_a_metric_the_model_does_not_log_is_refused_before_training(make_cfg, train, tmp_path):
    from {{ cookiecutter.package_name }}.harness.callbacks.run_progress import MonitoredMetricMissing

    with pytest.raises(MonitoredMetricMissing, match=r"monitor.metric=val/nope, but the model logs val/acc, val/loss"):
        train(make_cfg("monitor.metric=val/nope", *QUIET))
    record = summary(tmp_path / "run")
    assert record["status"] == "failed" and record["global_step"] == 0


def test_a_checkpoint_of_another_network_is_refused_before_the_data_is_loaded(make_cfg, train, tmp_path):
    from {{ cookiecutter.package_name }}.harness.checkpointing import CheckpointMismatchError

    train(make_cfg("trainer.max_epochs=1", *QUIET, output_dir=tmp_path / "mlp"))
    mlp_checkpoint = tmp_path / "mlp" / "checkpoints" / "last.ckpt"
    other = make_cfg("model.net.hidden_dims=[32]", f"ckpt_path={mlp_checkpoint}", *QUIET)
    with pytest.raises(CheckpointMismatchError, match=r"holds the weights of another network.*of another shape"):
        train(other)
    assert not (tmp_path / "run" / "checkpoints").exists()


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
    # The killed run had no chance to say so; whoever reads its record sees that its process is gone.
    assert summary(killed_dir)["status"] == "running" and observed_status(summary(killed_dir)) == "killed"
    torch.load(killed_dir / "checkpoints" / "last.ckpt", weights_only=True)

    subprocess.run(
        [sys.executable, "train.py", *overrides, "ckpt_path=last"], cwd=ROOT, env=subprocess_env(killed), check=True
    )
    assert uninterrupted.wait(timeout=300) == 0
    (resumed_dir,) = {p for p in (killed / "train" / "runs").iterdir()} - {killed_dir}
    expected, resumed = summary(only_run_dir(straight)), summary(resumed_dir)
    assert resumed["status"] == "completed"
    assert resumed["resumed_from"]["run_dir"] == str(killed_dir) and summary(killed_dir)["status"] == "killed"
    assert not list(killed_dir.rglob("*.tmp")), "a killed write's temporary was left behind"
    assert resumed["global_step"] == expected["global_step"] == 10 * 6
    assert resumed["metrics"] == expected["metrics"], f"killed after {saves} saves + {delay:.3f} s"


@pytest.mark.slow
def test_resume_removes_what_a_killed_checkpoint_write_left_behind(make_cfg, train, tmp_path):
    earlier = tmp_path / "train" / "runs" / "earlier"
    train(make_cfg("trainer.max_epochs=1", *QUIET, output_dir=earlier))
    last = earlier / "checkpoints" / "last.ckpt"
    intact = last.read_bytes()
    # A real write into that folder, killed half way (as a job killed while saving would be).
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(last)], env=subprocess_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "ready"
    while not any(p.stat().st_size > 1_000_000 for p in last.parent.glob(".last.ckpt.*.tmp")):
        assert writer.poll() is None, "the write ended before it could be killed"
        time.sleep(0.002)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert list(last.parent.glob(".*.tmp")) and last.read_bytes() == intact

    resumed = tmp_path / "train" / "runs" / "resumed"
    train(make_cfg("trainer.max_epochs=2", "ckpt_path=last", *QUIET, output_dir=resumed))
    assert sorted(path.name for path in last.parent.iterdir()) == ["epoch000-step000006.ckpt", "last.ckpt"]
    assert summary(resumed)["resumed_from"]["checkpoint"] == str(last)
    assert summary(resumed)["global_step"] == 2 * 6


class KillAt(Callback):
    """SIGKILLs its own process at one point of a run: as ``kill -9``, a lost node or the OOM killer would.

    ``phase``: setup (before a checkpoint is restored), sanity (the sanity check), train (before the training
    step after global step ``step``), validation (a validation after global step ``step``), save (while the
    ``save``-th checkpoint at global step ``step`` is put together: 1 the top-k file, 2 last.ckpt, so that 2
    kills between a complete top-k file and its last.ckpt), test (at test batch ``step``).
    """

    def __init__(self, phase: str, step: int = 0, save: int = 1):
        self.phase, self.step, self.save, self.saves = phase, step, save, 0

    def _kill(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def setup(self, trainer, pl_module, stage):
        if self.phase == "setup":
            self._kill()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.phase == "sanity" and trainer.sanity_checking:
            self._kill()
        if self.phase == "validation" and not trainer.sanity_checking and trainer.global_step == self.step:
            self._kill()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.phase == "train" and trainer.global_step == self.step:
            self._kill()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.phase == "save" and trainer.global_step == self.step:
            self.saves += 1
            if self.saves == self.save:
                self._kill()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.phase == "test" and batch_idx == self.step:
            self._kill()


# 3 epochs of 4 steps, kills in every phase in the order a run meets them, in two chains that run side by side:
# each killed run is resumed by the next with ckpt_path=last (once there is a checkpoint), and a last
# resumption runs to the end. Chain A ends in the training of epoch 2, chain B in the test.
CHAINS = {
    "A": [
        ("setup", 0, 1),
        ("sanity", 0, 1),
        ("train", 2, 1),
        ("validation", 4, 1),
        ("save", 4, 1),
        ("save", 4, 2),  # leaves the top-k file of step 4 without its last.ckpt
        ("setup", 0, 1),
        ("sanity", 0, 1),
        ("train", 5, 1),
        ("validation", 8, 1),
        ("save", 8, 2),
    ],
    "B": [
        ("train", 6, 1),
        ("save", 8, 1),
        ("validation", 8, 1),
        ("train", 10, 1),
        ("validation", 12, 1),
        ("save", 12, 1),
        ("save", 12, 2),
        ("setup", 0, 1),
        ("test", 0, 1),
        ("test", 1, 1),
        ("setup", 0, 1),
    ],
}
MATRIX = [
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "callbacks.model_checkpoint.save_top_k=-1",
    "model.net.dropout=0.1",
    "logger=none",
    "callbacks.progress_bar=null",
]


def kill_chain(log_dir: Path, kills: list[tuple[str, int, int]]) -> tuple[Path, dict[tuple, Path]]:
    """Runs and kills one run after another; returns the folder of the final, complete run and of each killed run."""
    runs = log_dir / "train" / "runs"
    killed: dict[tuple, Path] = {}
    for number, (phase, step, save) in enumerate(kills):
        resume = ["ckpt_path=last"] if list(runs.glob("*/checkpoints/*.ckpt")) else []
        before = set(runs.iterdir()) if runs.is_dir() else set()
        killer = ["+callbacks.kill._target_=test_reliability.KillAt", f"+callbacks.kill.phase={phase}"]
        killer += [f"+callbacks.kill.step={step}", f"+callbacks.kill.save={save}"]
        command = [sys.executable, "train.py", *MATRIX, *resume, *killer]
        result = subprocess.run(command, cwd=ROOT, env=subprocess_env(log_dir), capture_output=True, text=True)
        where = f"kill {number} ({phase}, step {step}, save {save})"
        assert result.returncode == -signal.SIGKILL, f"{where}: exit {result.returncode}\n{result.stderr[-3000:]}"
        (run_dir,) = set(runs.iterdir()) - before
        assert observed_status(summary(run_dir)) == "killed", where
        killed[(phase, step, save)] = run_dir
        if number and kills[number - 1] == ("save", 4, 2):
            # Killed between the top-k write and the first last.ckpt: that complete top-k file is resumed from.
            topk_only = killed[("save", 4, 2)]
            assert [p.name for p in (topk_only / "checkpoints").iterdir()] == ["epoch000-step000004.ckpt"]
            resumed_from = summary(run_dir)["resumed_from"]
            assert resumed_from["checkpoint"] == str(topk_only / "checkpoints" / "epoch000-step000004.ckpt"), where
            assert summary(topk_only)["status"] == "killed"
    before = set(runs.iterdir())
    final = [sys.executable, "train.py", *MATRIX, "ckpt_path=last"]
    subprocess.run(final, cwd=ROOT, env=subprocess_env(log_dir), check=True, capture_output=True)
    (final_dir,) = set(runs.iterdir()) - before
    return final_dir, killed


def weights(checkpoint: str) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.mark.slow
def test_kill_9_in_every_phase_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    straight = tmp_path / "straight"
    command = [sys.executable, "train.py", *MATRIX]
    uninterrupted = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(straight), stdout=subprocess.DEVNULL)
    with ThreadPoolExecutor(len(CHAINS)) as pool:
        chains = {name: pool.submit(kill_chain, tmp_path / name, kills) for name, kills in CHAINS.items()}
        (final_a, _), (final_b, killed_b) = chains["A"].result(), chains["B"].result()
    assert sum(len(kills) for kills in CHAINS.values()) >= 20
    assert uninterrupted.wait(timeout=300) == 0
    expected = summary(only_run_dir(straight))
    assert expected["global_step"] == 3 * 4

    # Chain A resumed in epoch 2: the last resumption trained, validated and tested as the uninterrupted run did.
    resumed = summary(final_a)
    assert resumed["status"] == "completed" and resumed["global_step"] == 3 * 4
    assert resumed["metrics"] == expected["metrics"]
    final_weights, expected_weights = weights(resumed["last_checkpoint"]), weights(expected["last_checkpoint"])
    assert all(torch.equal(final_weights[name], expected_weights[name]) for name in expected_weights)

    # Chain B was killed in the test: training was complete, the last resumption only tested. The last
    # validation is in the record of the run that trained the last epoch (kept current, then killed).
    resumed = summary(final_b)
    assert resumed["status"] == "completed" and resumed["global_step"] == 3 * 4
    for metric in ("test/loss", "test/acc"):
        assert resumed["metrics"][metric] == expected["metrics"][metric], metric
    for metric in ("val/loss", "val/acc"):
        assert summary(killed_b[("save", 12, 1)])["metrics"][metric] == expected["metrics"][metric], metric
    final_weights = weights(resumed["resumed_from"]["checkpoint"])
    assert all(torch.equal(final_weights[name], expected_weights[name]) for name in expected_weights)
    assert not list(tmp_path.rglob("*.tmp"))


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


class FolderVanishes(Callback):
    """At the start of epoch 1 a logger's folder in the run folder becomes a file: nothing can be written there."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            folder = Path(trainer.default_root_dir) / self.folder
            shutil.rmtree(folder)
            folder.write_text("not a folder")


def test_failing_bookkeeping_is_reported_and_training_goes_on(make_cfg, train, tmp_path, caplog):
    cfg = make_cfg(
        "trainer.max_epochs=3",
        *SHORT,
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=2",
        "+callbacks.broken_plot._target_=test_reliability.BrokenPlot",
        "+callbacks.vanishing._target_=test_reliability.FolderVanishes",
        "+callbacks.vanishing.folder=csv",
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


def test_a_trained_run_is_completed_when_only_tensorboard_cannot_be_written(make_cfg, train, tmp_path):
    cfg = make_cfg(
        "trainer.max_epochs=2",
        *SHORT,
        "logger=tensorboard",
        "+callbacks.vanishing._target_=test_reliability.FolderVanishes",
        "+callbacks.vanishing.folder=tensorboard",
    )
    train(cfg)
    record = summary(tmp_path / "run")
    assert record["status"] == "completed" and "test/acc" in record["metrics"]
    assert any(where.startswith("logger tensorboard.") for where in record["bookkeeping_errors"])


class RecordCannotBeWritten(Callback):
    """From epoch 1 on, summary.json cannot be replaced: its temporary file's name is taken by a folder."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            (Path(trainer.default_root_dir) / ".summary.json.tmp").mkdir()


def test_a_run_whose_record_cannot_be_written_trains_to_the_end(make_cfg, train, tmp_path, caplog):
    cfg = make_cfg("trainer.max_epochs=3", *QUIET, "+callbacks.stuck._target_=test_reliability.RecordCannotBeWritten")
    with caplog.at_level(logging.ERROR):
        train(cfg)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3 * 6
    assert f"Cannot write {tmp_path / 'run' / 'summary.json'}" in caplog.text
    assert "The run completed, but" in caplog.text
    # What was written before stays: the record after the first epoch's validation.
    assert summary(tmp_path / "run")["global_step"] == 6


def test_a_full_disk_is_said_plainly(make_cfg, train, tmp_path):
    # The kernel's own "disk full": the checkpoint of epoch 0 is written through /dev/full.
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / f".epoch000-step000006.ckpt.{os.getpid()}.tmp").symlink_to("/dev/full")
    with pytest.raises(OSError):
        train(make_cfg("trainer.max_epochs=2", *QUIET))
    record = summary(tmp_path / "run")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"No space left on device: the disk holding {tmp_path / 'run'} is full.")
    assert "LOG_DIR=" in record["error"]


class ReadsTheRecord(Callback):
    """Reads summary.json at the start of every epoch after the first, as someone watching the run would."""

    seen: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            ReadsTheRecord.seen.append(summary(Path(trainer.default_root_dir)))


def test_the_record_is_current_after_every_validation_and_says_why_training_stopped(make_cfg, train, tmp_path):
    ReadsTheRecord.seen = []
    cfg = make_cfg(
        "trainer.max_epochs=10",
        *[o for o in QUIET if o != "callbacks.early_stopping=null"],
        "monitor.mode=max",
        "callbacks.early_stopping.patience=2",
        "+callbacks.reader._target_=test_reliability.ReadsTheRecord",
    )
    train(cfg)
    # mode=max on a falling val/loss: epoch 0 stays best, and patience 2 stops the run after epoch 2.
    during = ReadsTheRecord.seen
    assert [record["global_step"] for record in during] == [6, 12]
    assert all(record["status"] == "running" for record in during)
    best = during[0]["monitor"]["best"]
    assert best == during[0]["metrics"]["val/loss"] and during[1]["monitor"]["best"] == best
    record = summary(tmp_path / "run")
    assert record["status"] == "completed" and record["global_step"] == 18
    assert record["monitor"]["best"] == best
    assert record["stopped_early"]["epoch"] == 2
    assert "did not improve in the last 2 records" in record["stopped_early"]["reason"]


class BrokenEssential(Callback):
    def on_validation_end(self, trainer, pl_module):
        raise RuntimeError("essential step failed")


def test_a_failing_essential_callback_still_stops_the_run(make_cfg, train, tmp_path):
    cfg = make_cfg("trainer.max_epochs=1", *QUIET, "+callbacks.essential._target_=test_reliability.BrokenEssential")
    with pytest.raises(RuntimeError, match="essential step failed"):
        train(cfg)
    assert summary(tmp_path / "run")["status"] == "failed"
