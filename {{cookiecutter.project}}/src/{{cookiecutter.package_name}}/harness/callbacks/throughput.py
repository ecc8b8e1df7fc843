"""How fast a run trains, logged as ``throughput/*`` every few steps and summed up in summary.json.

Every ``every_n_steps`` training batches, global rank 0 logs: samples/s (all processes together),
tokens/s where the model or the data counts tokens (``count_tokens``, see contract.py), the time
of one training batch, the share of it spent waiting for the batch, peak memory (the GPU
allocator's peak on a GPU, the process's peak RSS on a CPU), and on a GPU the MFU: the FLOP/s
of one device over the card's peak for the precision in use. ``summary()`` gives the medians of
these intervals (the highest peak memory), and the FLOP/s of one device, for summary.json.

Lightning's pieces do the arithmetic: ``Throughput`` turns counts and a clock into rates, FLOP/s
and MFU, and ``get_available_flops`` knows the peak FLOP/s of common cards (None for others, and
on a CPU: then the summary says why there is no MFU rather than giving a wrong number). The FLOPs
of a training batch are counted once, on the first training batch, by torch's ``FlopCounterMode``
(the counter behind Lightning's ``measure_flops``) around the real step: forward, loss and
backward as the module runs them, whatever its batch looks like. A module with a
``flops_per_batch`` attribute (Lightning's ThroughputMonitor convention) is taken at its word.

Not Lightning's ThroughputMonitor callback itself: it waits for the GPU after every batch, which
stalls the pipeline that keeps a GPU busy; here the clock is read without waiting, and the GPU is
synchronized once per interval, where the sums of the per-batch times are exact again. The data
wait of a batch is the time from the end of the one before to its start, as torchtitan counts it:
waiting for the dataloader and moving the batch to the device (and Lightning's few steps between
batches; at the steps where Lightning writes logs, that writing too). Validation is not counted,
nor the batch after it.
"""

import logging
import math
import statistics
import sys
import time
from typing import Any

import torch
from pytorch_lightning import Callback
from pytorch_lightning.utilities.data import extract_batch_size

log = logging.getLogger(__name__)

GIB = 2**30
SEQUENCES = (tuple, list)
# Logged at every interval (every scalar written costs the loggers time); the summary holds all of METRICS.
LOGGED = ("samples_per_s", "tokens_per_s", "step_time_ms", "data_wait_fraction", "peak_memory_gib", "mfu")
METRICS = (
    "samples_per_s",
    "tokens_per_s",
    "step_time_ms",
    "data_wait_fraction",
    "device_tflops_per_s",
    "mfu",
    "peak_memory_gib",
)


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory, or None where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


class TrainingThroughput(Callback):
    # Reports only: a failure here is logged and counted in summary.json, and training goes on (bookkeeping.py).
    bookkeeping = True

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = max(1, int(every_n_steps))
        self.active = False
        self.history: list[dict[str, float]] = []
        self.flops_per_batch: int | None = None
        self.mfu_unavailable: str | None = None
        self.peak_memory_of = ""
        self._flop_counter = None
        self._count_flops_next = False
        # None while batches are not timed: on other ranks, after validation, for the batch whose FLOPs are counted.
        self._last_end: float | None = None

    # --- setting up ------------------------------------------------------------------------

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        from lightning_fabric.utilities.throughput import Throughput, get_available_flops
        from pytorch_lightning.callbacks.throughput_monitor import _plugin_to_compute_dtype

        self.active = True
        self.device = trainer.strategy.root_device
        dtype = _plugin_to_compute_dtype(trainer.precision_plugin)
        available = get_available_flops(self.device, dtype)
        if available is None and self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            self.mfu_unavailable = f"unknown card: Lightning lists no peak FLOP/s for {name!r} at {dtype}"
            log.warning("MFU is not computed: %s.", self.mfu_unavailable)
        elif available is None:
            self.mfu_unavailable = f"no MFU on {self.device.type}: peak FLOP/s are listed for GPUs and TPUs only"
        self.throughput = Throughput(available_flops=available, world_size=trainer.world_size, window_size=2)
        # Lightning's Throughput keeps running totals; the first entry is the start.
        self.throughput.update(time=0.0, batches=0, samples=0, lengths=0, flops=0)
        self.totals = {"time": 0.0, "batches": 0, "samples": 0, "tokens": 0}
        self.flops_per_batch = getattr(pl_module, "flops_per_batch", None)
        self._count_flops_next = self.flops_per_batch is None
        self._count_tokens = _token_counter(pl_module, trainer.datamodule)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.peak_memory_of = "GPU allocator peak (torch.cuda.max_memory_allocated)"
        else:
            self.peak_memory_of = "process peak resident memory (RSS)"
        self._on_gpu = self.device.type == "cuda"
        self._reset_interval()

    # --- every batch ---------------------------------------------------------------------

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # The epoch's first batch counts from here: it includes making the dataloader's iterator.
        if self.active:
            self._last_end = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        # Validation is not training time: the batch after it is not counted either.
        self._last_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Since the last batch ended: waiting for this one from the dataloader and moving it to the device.
        self._batch_start = time.perf_counter()
        if self._count_flops_next:
            from torch.utils.flop_counter import FlopCounterMode

            self._count_flops_next, self._last_end = False, None  # the counted batch runs slower: not timed
            self._flop_counter = FlopCounterMode(display=False)
            self._flop_counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Kept short: it runs at every step.
        if self._last_end is None:
            if self._flop_counter is not None:
                self._finish_flop_count()
            if self.active:
                self._last_end = time.perf_counter()
            return
        closing = self._batches + 1 == self.every_n_steps
        if closing and self._on_gpu:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self._time += now - self._last_end
        self._wait += self._batch_start - self._last_end
        self._last_end = now
        self._batches += 1
        self._samples += _batch_size(batch)
        if self._count_tokens is not None:
            self._tokens += self._count_tokens(batch)
        if closing:
            self._close_interval(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        # A short run, or the rest after the last full interval.
        if self.active and self._batches:
            if self._on_gpu:
                torch.cuda.synchronize(self.device)
            self._close_interval(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self._flop_counter is not None:
            self._flop_counter.__exit__(None, None, None)
            self._flop_counter = None

    # --- every interval ------------------------------------------------------------------

    def _finish_flop_count(self) -> None:
        counter, self._flop_counter = self._flop_counter, None
        counter.__exit__(None, None, None)
        self.flops_per_batch = counter.get_total_flops() or None
        if self.flops_per_batch is None:
            self.mfu_unavailable = self.mfu_unavailable or "no FLOPs counted: define flops_per_batch on the module"

    def _reset_interval(self) -> None:
        self._time = self._wait = 0.0
        self._batches = self._samples = self._tokens = 0

    def _close_interval(self, trainer) -> None:
        totals = self.totals
        tokens = int(self._tokens) if self._count_tokens is not None else None
        totals["time"] += self._time
        totals["batches"] += self._batches
        totals["samples"] += self._samples
        totals["tokens"] += tokens or 0
        self.throughput.update(
            time=totals["time"],
            batches=totals["batches"],
            samples=totals["samples"],
            lengths=totals["tokens"] if tokens is not None else None,
            flops=None if self.flops_per_batch is None else self.flops_per_batch * self._batches,
        )
        rates = self.throughput.compute()
        world = "" if trainer.world_size > 1 else "device/"
        measured = {
            "samples_per_s": rates[f"{world}samples_per_sec"],
            "tokens_per_s": rates.get(f"{world}items_per_sec") if tokens is not None else None,
            "step_time_ms": 1000 * self._time / self._batches,
            "data_wait_fraction": min(1.0, self._wait / self._time),
            "device_tflops_per_s": _scaled(rates.get("device/flops_per_sec"), 1e-12),
            "mfu": rates.get("device/mfu"),
            "peak_memory_gib": _scaled(self._peak_memory(), 1 / GIB),
        }
        measured = {name: value for name, value in measured.items() if value is not None}
        self.history.append(measured)
        logged = {f"throughput/{name}": value for name, value in measured.items() if name in LOGGED}
        for logger in trainer.loggers:
            logger.log_metrics(logged, trainer.global_step)
        self._reset_interval()

    def _peak_memory(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return peak_rss_bytes()

    # --- the run's summary ---------------------------------------------------------------

    def summary(self) -> dict[str, Any] | None:
        """Medians over the logged intervals (peak memory: the highest), for summary.json; None if inactive."""
        if not self.active:
            return None
        found: dict[str, Any] = {}
        for name in METRICS:
            values = [interval[name] for interval in self.history if name in interval]
            if values:
                found[name] = max(values) if name == "peak_memory_gib" else statistics.median(values)
        found.update(
            peak_memory_of=self.peak_memory_of,
            flops_per_batch=self.flops_per_batch,
            intervals=len(self.history),
            steps_per_interval=self.every_n_steps,
        )
        if "mfu" not in found:
            found["mfu"] = None
            found["mfu_unavailable"] = self.mfu_unavailable or "no interval measured"
        return found


def throughput_summary(trainer) -> dict[str, Any] | None:
    """The summary of the run's TrainingThroughput callback, if it has one."""
    for callback in trainer.callbacks:
        if isinstance(callback, TrainingThroughput):
            return callback.summary()
    return None


def _token_counter(pl_module, datamodule):
    """``count_tokens(batch)`` of the module, else of the data module (see contract.py), else None."""
    for owner in (pl_module, datamodule):
        count = getattr(owner, "count_tokens", None)
        if callable(count):
            return count
    return None


def _batch_size(batch) -> int:
    """Lightning's batch size of ``batch`` (the length of its first tensor), looked up directly for the usual
    ``(inputs, targets)`` or a tensor: Lightning's general search costs a few microseconds at every step."""
    first = batch[0] if isinstance(batch, SEQUENCES) and batch else batch
    if isinstance(first, torch.Tensor) and first.ndim:
        return first.shape[0]
    return extract_batch_size(batch)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None or math.isnan(value) else value * factor
