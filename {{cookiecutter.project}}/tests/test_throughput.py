"""Throughput as a run trains: logged every few steps, summed up in summary.json, FLOPs counted as by hand."""

import math
import resource
import subprocess
import sys
import time

import pytest
import torch

from {{ cookiecutter.package_name }}.data import DigitsDataModule

from conftest import ROOT, subprocess_env, summary

# Digits: 1293 training examples, batches of 64: 21 per epoch, the last one of 13.
BATCH, BATCHES_PER_EPOCH = 64, 21
FETCH_DELAY_S = 0.1


def mlp_flops_per_batch(batch: int, widths: list[int]) -> int:
    """Matrix products of one training step of an MLP, counted by hand: 2 FLOPs per multiply-add.

    Forward: batch x in x out per layer; backward: as many for the weight gradient, and as many
    again for the input gradient, except in the first layer, whose input (the data) needs none.
    """
    layers = [a * b for a, b in zip(widths, widths[1:], strict=False)]
    return 2 * batch * (2 * sum(layers) + sum(layers[1:]))


def tensorboard(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(run_dir / "tensorboard")).Reload()


def scalars(run_dir, tag: str) -> list[float]:
    return [event.value for event in tensorboard(run_dir).Scalars(tag)]


class SlowDigits(DigitsDataModule):
    """Digits whose training batches each take FETCH_DELAY_S to fetch."""

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        super().setup(stage)
        train = self.datasets["train"]
        draw = train.__getitems__

        def slow(indices):
            time.sleep(FETCH_DELAY_S)
            return draw(indices)

        train.__getitems__ = slow


class DigitsAsTokens(DigitsDataModule):
    """Digits that call each of an image's 64 pixels a token, counted on the batch's device."""

    def count_tokens(self, batch) -> torch.Tensor:
        images, _ = batch
        return torch.tensor(images[:, 0].numel(), device=images.device)


def test_a_default_run_logs_throughput_and_summarises_it(make_cfg, train, tmp_path):
    train(make_cfg("trainer.max_epochs=2", "trainer.log_every_n_steps=5"))
    run_dir = tmp_path / "run"
    throughput = summary(run_dir)["throughput"]

    # The first batch is the one whose FLOPs are counted, and is not timed: 41 batches, 8 intervals of 5 and one of 1.
    assert throughput["intervals"] == 9 and throughput["steps_per_interval"] == 5
    assert throughput["flops_per_batch"] == mlp_flops_per_batch(BATCH, [64, 64, 128, 64, 10])
    assert throughput["samples_per_s"] > 0 and throughput["step_time_ms"] > 0
    assert 0 <= throughput["data_wait_fraction"] <= 1
    # One device: its FLOP/s are the counted FLOPs per batch over the time of a batch.
    assert throughput["device_tflops_per_s"] > 0
    assert throughput["mfu"] is None and throughput["mfu_unavailable"].startswith("no MFU on cpu")
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    assert 0 < throughput["peak_memory_gib"] <= peak_rss_gib
    assert throughput["peak_memory_of"] == "process peak resident memory (RSS)"

    samples_per_s = scalars(run_dir, "throughput/samples_per_s")
    step_time_ms = scalars(run_dir, "throughput/step_time_ms")
    assert len(samples_per_s) == len(step_time_ms) == 9
    assert throughput["samples_per_s"] == pytest.approx(sorted(samples_per_s)[4])
    # Each interval's rate and step time describe the same batches: their product is the mean batch size.
    for rate, step_ms in zip(samples_per_s, step_time_ms, strict=True):
        assert 13 * (1 - 1e-6) <= rate * step_ms / 1000 <= BATCH * (1 + 1e-6)
    logged = {"samples_per_s", "step_time_ms", "data_wait_fraction", "peak_memory_gib"}
    assert {tag for tag in tensorboard(run_dir).Tags()["scalars"] if tag.startswith("throughput/")} == {
        f"throughput/{name}" for name in logged
    }


@pytest.mark.parametrize(
    ("net", "widths"),
    [
        ("model.net.hidden_dims=[32,16]", [64, 32, 16, 10]),
        ("model.net.batch_norm=false", [64, 64, 128, 64, 10]),
    ],
)
def test_the_flop_count_matches_a_hand_count(make_cfg, train, tmp_path, net, widths):
    train(make_cfg(net, "trainer.max_epochs=1", "data.batch_size=50", "logger=none", "test=false"))
    assert summary(tmp_path / "run")["throughput"]["flops_per_batch"] == mlp_flops_per_batch(50, widths)


def test_time_blocked_on_the_dataloader_is_data_wait(make_cfg, train, tmp_path):
    cfg = make_cfg(
        "data._target_=test_throughput.SlowDigits",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=8",
        "trainer.log_every_n_steps=3",
        "logger=tensorboard",
        "test=false",
    )
    train(cfg)
    run_dir = tmp_path / "run"
    fractions = scalars(run_dir, "throughput/data_wait_fraction")
    step_time_ms = scalars(run_dir, "throughput/step_time_ms")
    assert len(fractions) == 3  # 7 timed batches: 3, 3, 1
    for fraction, step_ms in zip(fractions, step_time_ms, strict=True):
        # Every fetch sleeps: at least that long of each batch is waiting for data.
        assert fraction <= 1 and fraction * step_ms >= 1000 * FETCH_DELAY_S * 0.99


def test_tokens_per_second_where_the_data_counts_tokens(make_cfg, train, tmp_path):
    cfg = make_cfg("data._target_=test_throughput.DigitsAsTokens", "trainer.max_epochs=1", "logger=none", "test=false")
    train(cfg)
    throughput = summary(tmp_path / "run")["throughput"]
    assert throughput["tokens_per_s"] == pytest.approx(64 * throughput["samples_per_s"], rel=1e-9)


def test_no_tokens_per_second_where_nothing_counts_them(make_cfg, train, tmp_path):
    train(make_cfg("trainer.max_epochs=1", "logger=none", "test=false"))
    assert "tokens_per_s" not in summary(tmp_path / "run")["throughput"]


def test_switched_off_it_leaves_no_trace(make_cfg, train, tmp_path):
    train(make_cfg("callbacks.throughput=null", "trainer.max_epochs=1", "test=false"))
    assert summary(tmp_path / "run")["throughput"] is None
    assert not [tag for tag in tensorboard(tmp_path / "run").Tags()["scalars"] if tag.startswith("throughput/")]


@pytest.mark.slow
def test_samples_per_second_counts_every_process(tmp_path):
    import csv

    command = [
        *(sys.executable, "train.py", "trainer=ddp_cpu", "trainer.devices=2", "trainer.max_epochs=1"),
        *("trainer.log_every_n_steps=3", "test=false", "callbacks.progress_bar=null", "logger=csv"),
    ]
    subprocess.run(command, cwd=ROOT, env=subprocess_env(tmp_path), check=True, capture_output=True, timeout=300)
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    assert summary(run_dir)["throughput"]["intervals"] == 4
    with open(run_dir / "csv" / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["throughput/samples_per_s"]]
    # Each process trains on 647 examples: 10 batches of 64 and one of 7; the first is the one whose FLOPs
    # are counted. Three intervals of 3 full batches from both processes, then the last batch alone.
    per_batch = [float(r["throughput/samples_per_s"]) * float(r["throughput/step_time_ms"]) / 1000 for r in rows]
    assert per_batch == pytest.approx([2 * BATCH] * 3 + [2 * 7], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mfu_on_a_gpu(make_cfg, train, tmp_path):
    train(make_cfg("trainer.accelerator=gpu", "trainer.max_epochs=1", "logger=none", "test=false"))
    throughput = summary(tmp_path / "run")["throughput"]
    assert throughput["peak_memory_of"].startswith("GPU allocator peak")
    if throughput["mfu"] is None:
        assert throughput["mfu_unavailable"].startswith("unknown card")
    else:
        assert 0 < throughput["mfu"] < 1 and not math.isnan(throughput["mfu"])
