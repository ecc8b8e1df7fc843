"""Before any heavy work: fail when the trainer asks for a GPU torch cannot use, warn when one sits idle.

The command line is checked before Python imports torch (``checks.py``); this catches what only
torch can tell, e.g. a CPU-only torch build on a machine with a GPU. CUDA is not initialised
here (Lightning's fork-safe device count), so fork-based strategies still work.
"""

import logging

from .distributed import is_global_zero

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("gpu", "cuda")


class NoGPUError(RuntimeError):
    """The trainer asks for a GPU that torch cannot use; the message says what to do."""


def check(accelerator: str) -> None:
    import torch
    from lightning_fabric.accelerators.cuda import num_cuda_devices

    gpus = num_cuda_devices()
    if str(accelerator) in GPU_ACCELERATORS and gpus == 0:
        if torch.version.cuda is None:
            raise NoGPUError(
                f"trainer.accelerator={accelerator} asks for a GPU, but torch {torch.__version__} was built "
                "without CUDA. Install a CUDA build of torch (https://pytorch.org/get-started/locally/), "
                "or train on the CPU with trainer=cpu."
            )
        raise NoGPUError(
            f"trainer.accelerator={accelerator} asks for a GPU, but torch finds none (check `nvidia-smi` and "
            "CUDA_VISIBLE_DEVICES). Train on the CPU with trainer=cpu, or run on a machine with a GPU."
        )
    if gpus and str(accelerator) == "cpu" and is_global_zero():
        log.warning(
            "!!! %d GPU(s) present, but this run trains on the CPU (trainer.accelerator=cpu) and will be much "
            "slower. Use trainer=gpu or trainer.accelerator=auto to train on the GPU. !!!",
            gpus,
        )
