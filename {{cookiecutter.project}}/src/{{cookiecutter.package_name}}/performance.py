"""Process-wide torch settings for speed, applied once at the start of a run, a profiler that costs nothing,
and a LightningModule mixin that takes nn.Module's checks off Lightning's per-hook bookkeeping."""

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

    Lightning wraps every hook call in ``profiler.profile(...)``, ~130 times per training step with
    the default callbacks. The PassThroughProfiler's context manager is a generator that costs
    ~1.5 us per use, a shared ``nullcontext`` ~0.2 us: the benchmark's MLP step on a CPU went from
    2.47 to 2.21 ms. ``trainer.profiler=simple`` (or ``debug=profiler``) still replaces it.
    """

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._nothing


class FastHookNames:
    """Mixin for a LightningModule (put it first among the bases): Lightning's note of the running hook,
    stored without nn.Module's checks.

    Lightning sets ``module._current_fx_name`` before and after each hook it calls, ~40 times per
    training step with the default callbacks. ``nn.Module.__setattr__`` first asks whether the value
    is a Parameter, a Module or a Buffer (two of those isinstance checks run Python), ~1.2 us a time:
    2-3% of a small MLP's step on a CPU. A hook name is a string, so it goes straight into the
    instance's ``__dict__``, where nn.Module would have put it too. Were Lightning to rename the
    attribute, this would do nothing; a test in tests/test_train.py notices.
    """

    def __setattr__(self, name: str, value) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
