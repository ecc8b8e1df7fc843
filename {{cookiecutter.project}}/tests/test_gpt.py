"""model=gpt on data=python_docs: exact per-token loss, samples, tokens counted; DDP, a sweep, resume, evaluate.py."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import evaluate
from {{ cookiecutter.package_name }}.data import PythonDocsDataModule
from {{ cookiecutter.package_name }}.data.text import decode, encode, python_docs
from {{ cookiecutter.package_name }}.models import GPT

from conftest import ROOT, subprocess_env, summary

# The first 10 kB of the corpus in blocks of 32 bytes: 281 training blocks, 36 batches of 8 (18 on each of
# two processes); 500 bytes evaluated per split.
TINY = (
    "model=gpt",
    "data=python_docs",
    "data.max_bytes=10000",
    "data.block_size=32",
    "data.batch_size=8",
    "model.n_embd=32",
    "model.sample_tokens=12",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "callbacks.early_stopping=null",
    "callbacks.progress_bar=null",
)


def exact_loss(checkpoint: Path, split: str) -> float:
    """The mean cross-entropy over every byte of the split, computed here in one pass with the checkpoint's weights."""
    model = GPT.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    data = PythonDocsDataModule(block_size=32, max_bytes=10000)
    data.setup("fit")
    inputs, targets = data.datasets[split].tensors
    with torch.no_grad():
        return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()


def test_corpus_ships_with_python_and_every_evaluated_byte_is_predicted_once():
    data = PythonDocsDataModule(block_size=32, max_bytes=10000)
    data.setup("fit")
    assert "The" in python_docs() and data.model_kwargs == {"vocab_size": 256, "block_size": 32}
    for split in ("val", "test"):
        inputs, targets = data.datasets[split].tensors
        # Blocks continue each other: the next block's first input is this block's last target.
        assert torch.equal(inputs[1:, 0], targets[:-1, -1]) and torch.equal(inputs[:, 1:], targets[:, :-1])
    with pytest.raises(ValueError, match="block_size=4096"):
        PythonDocsDataModule(block_size=4096, max_bytes=10000).setup("fit")


def test_gpt_logs_exact_loss_perplexity_tokens_and_a_sample(make_cfg, train, tmp_path, caplog):
    caplog.set_level("INFO")
    train(make_cfg(*TINY, "logger=csv"))
    run = summary(tmp_path / "run")
    metrics = run["metrics"]
    assert run["status"] == "completed" and run["global_step"] == 36
    assert metrics["val/loss"] == pytest.approx(exact_loss(run["best_checkpoint"], "val"), rel=1e-5)
    assert metrics["test/loss"] == pytest.approx(exact_loss(run["best_checkpoint"], "test"), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)
    # Better than guessing among 256 bytes, after one short epoch.
    assert metrics["val/loss"] < math.log(256)
    # 8 blocks of 32 predicted bytes per batch.
    assert run["throughput"]["tokens_per_s"] == pytest.approx(run["throughput"]["samples_per_s"] * 32)
    samples = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Sample at step 36: 'The ")]
    assert len(samples) == 1


def test_gpt_resumes_and_predicts_continuations(make_cfg, train, tmp_path):
    first = tmp_path / "train" / "runs" / "first"
    train(make_cfg(*TINY, "logger=none", "test=false", output_dir=first))
    train(make_cfg(*TINY, "logger=none", "trainer.max_epochs=2", "ckpt_path=last", output_dir=tmp_path / "second"))
    assert summary(tmp_path / "second")["global_step"] == 2 * 36
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def f(x):\nThe while statement\n", encoding="utf-8")
    written = evaluate.main([str(tmp_path / "second"), f"predict={prompts}"])
    with written.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["input"] for row in rows] == ["def f(x):", "The while statement"]
    model = GPT.load_from_checkpoint(summary(tmp_path / "second")["best_checkpoint"], weights_only=True)
    for row in rows:
        assert row["continuation"] == decode(model.continue_tokens(encode(row["input"]), 12))


@pytest.mark.slow
def test_gpt_under_ddp_evaluates_as_one_process_and_sweeps(tmp_path):
    env = subprocess_env(tmp_path / "logs")
    ddp = [sys.executable, "train.py", *TINY, "trainer=ddp_cpu", "trainer.devices=2", "logger=none"]
    done = subprocess.run(ddp, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    run = summary(run_dir)
    assert run["metrics"]["val/loss"] == pytest.approx(exact_loss(run["best_checkpoint"], "val"), rel=1e-5)

    sweep = [sys.executable, "train.py", "-m", *TINY, "logger=none", "test=false", "model.optimizer.lr=1e-3,3e-3"]
    done = subprocess.run(sweep, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted((tmp_path / "logs" / "train" / "multiruns").glob("*/*/summary.json"))
    assert [summary(job.parent)["status"] for job in jobs] == ["completed", "completed"]


@pytest.mark.slow
def test_gpt_sharded_with_fsdp_on_two_cpu_processes(tmp_path):
    # FSDP2 over gloo: the checkpoint is one full file that an unsharded model loads, and training resumes from it.
    env = subprocess_env(tmp_path / "logs")
    fsdp = [sys.executable, "train.py", *TINY, "trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"]
    for more in (["logger=none", "test=false"], ["logger=none", "trainer.max_epochs=2", "ckpt_path=last"]):
        done = subprocess.run([*fsdp, *more], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    first, resumed = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    run = summary(resumed)
    assert run["status"] == "completed" and run["global_step"] == 2 * 18
    assert run["resumed_from"]["run_dir"] == str(first)
    assert run["metrics"]["val/loss"] == pytest.approx(exact_loss(run["best_checkpoint"], "val"), rel=1e-5)
    assert run["metrics"]["test/loss"] == pytest.approx(exact_loss(run["best_checkpoint"], "test"), rel=1e-5)
    written = evaluate.main([str(resumed), "split=val"])
    assert json.loads(written.read_text())["metrics"]["val/loss"] == pytest.approx(run["metrics"]["val/loss"], rel=1e-5)
