"""What ``nvidia-smi`` and ``top`` show (GPU utilisation, memory, power; CPU and RAM), logged every few seconds.

The readings come from the driver (NVML, through ``torch.cuda``) and from psutil: nothing waits for
the GPU, and between two readings the training loop only looks at the clock. At the start, global
rank 0 logs the devices it trains on.
"""

import logging
import os
import time

from pytorch_lightning import Callback

log = logging.getLogger(__name__)

GIB = 2**30


class SystemMonitor(Callback):
    # Failures are reported and training goes on (callbacks/bookkeeping.py).
    bookkeeping = True

    def __init__(self, interval_s: float = 30.0):
        self.interval_s = interval_s
        self._next_reading = 0.0
        self._gpus: list[int] = []
        self._process = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        import psutil
        import torch

        if stage != "fit" or not trainer.is_global_zero:
            return
        self._process = psutil.Process()
        psutil.cpu_percent()  # the first reading only starts the CPU clock
        device = trainer.strategy.root_device
        self._gpus = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
        found = [f"CPU: {os.cpu_count()} cores, {psutil.virtual_memory().total / GIB:.1f} GiB RAM"]
        for index in self._gpus:
            props = torch.cuda.get_device_properties(index)
            found.append(f"GPU {index}: {props.name}, {props.total_memory / GIB:.1f} GiB")
        log.info("Training on %s (%d process(es)). Found %s", device, trainer.world_size, "; ".join(found))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._process is None or time.monotonic() < self._next_reading:
            return
        self._next_reading = time.monotonic() + self.interval_s
        readings = self.read()
        for logger in trainer.loggers:
            logger.log_metrics(readings, step=trainer.global_step)

    def read(self) -> dict[str, float]:
        import psutil

        memory = psutil.virtual_memory()
        readings = {
            "system/cpu_percent": psutil.cpu_percent(),
            "system/ram_used_gib": (memory.total - memory.available) / GIB,
            "system/ram_percent": memory.percent,
            "system/process_rss_gib": self._process.memory_info().rss / GIB,
        }
        if self._gpus:
            readings.update(self._read_gpus())
        return readings

    def _read_gpus(self) -> dict[str, float]:
        import torch

        readings = {}
        try:
            for index in self._gpus:
                prefix = f"system/gpu{index}/"
                readings[prefix + "utilization_percent"] = torch.cuda.utilization(index)
                readings[prefix + "memory_used_gib"] = torch.cuda.device_memory_used(index) / GIB
                readings[prefix + "power_w"] = torch.cuda.power_draw(index) / 1000  # NVML reports milliwatts
                readings[prefix + "temperature_c"] = torch.cuda.temperature(index)
        except Exception as error:  # NVML missing (no nvidia-ml-py) or unusable (driver, NVMLError)
            # CPU and RAM readings go on without the GPU ones.
            log.warning("GPU readings switched off: %s", error)
            self._gpus = []
        return readings
