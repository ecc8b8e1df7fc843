"""Process-wide torch settings for speed, applied once at the start of a run, and a profiler that costs nothing."""

import contextlib
import os

from pytorch_lightning.profilers import PassThroughProfiler


def configure_torch(matmul_precision: str) -> None:
    import torch

    # "high" lets float32 matrix products use TF32 on Ampere and newer GPUs; "highest" keeps full fp32.
    torch.set_float32_matmul_precision(matmul_precision)
    # Lightning sets this so that torch.cuda.is_available() asks NVML instead of initialising CUDA, which
    # would break fork-based DDP. torch caches NVML's answer only once CUDA is initialised, and Adam asks
    # at every step: without a GPU, that reloads the NVML library every step (~0.1 ms; 5-15% of a small
    # MLP's step on a CPU). Without a GPU there is no CUDA to protect.
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


class NoProfiler(PassThroughProfiler):
    """Lightning's "no profiler", minus its cost.

    Lightning wraps every hook call in ``profiler.profile(...)``, over a hundred times per training
    step with the default callbacks. The PassThroughProfiler's context manager is a generator,
    several times dearer than one shared ``nullcontext``: a tenth of a small MLP's step on a CPU.
    ``trainer.profiler=simple`` (or ``debug=profiler``) still replaces it.
    """

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._nothing
