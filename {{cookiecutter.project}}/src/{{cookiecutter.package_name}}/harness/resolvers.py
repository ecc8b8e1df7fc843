"""OmegaConf resolvers that the configs use; registered before Hydra composes them."""

import datetime as dt
import functools
import os
import re
import secrets
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from .config_help import help_options
from .devices import GPU_ACCELERATORS
from .distributed import launched_externally
from .rank_logs import log_file_name


@functools.cache
def run_id() -> str:
    """An id shared by every process of one run, and unique between runs.

    Ranks started by an external launcher (srun, torchrun) each compose the config
    themselves, so the id must come from the launcher (or from $RUN_ID, set by hand);
    otherwise a random token keeps two runs started in the same second apart.
    """
    if value := os.environ.get("RUN_ID"):
        return value
    if job := os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    if value := os.environ.get("SLURM_JOB_ID"):
        return value
    if (value := os.environ.get("TORCHELASTIC_RUN_ID")) is not None:
        if value == "none":
            # torchrun's default id when nodes meet at --master-addr/--master-port: the same for every run.
            raise ValueError(
                "torchrun was started without --rdzv-id, so its ranks cannot agree on a run folder. Pass "
                "--rdzv-id=<an id that is the same on every node and new for each run> to torchrun, "
                "or set RUN_ID=<that id> in the environment of every node."
            )
        return value
    return secrets.token_hex(3)


@functools.cache
def run_name() -> str:
    """A run folder's name: ``<date>_<time>_<id>``, or only the id when a launcher started the ranks.

    Ranks started by srun or torchrun compose the config seconds apart, and a requeued SLURM
    job must find its folder again, so they cannot use the clock; their id is shared and unique.
    """
    if launched_externally() or os.environ.get("RUN_ID"):
        return run_id()
    return f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S}_{run_id()}"


def sweep_name() -> str | None:
    """The name of the sweep folder a multirun job belongs to (W&B groups a sweep's runs by it); None otherwise."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def folder_name(*parts) -> str:
    """``parts`` joined by '-' into one folder name: ``val/loss`` becomes ``val_loss``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(part) for part in parts))


def if_gpu(accelerator: str, on_gpu: Any, otherwise: Any) -> Any:
    """``on_gpu`` where ``accelerator`` trains on a GPU, else ``otherwise``: a GPU preset's
    ``precision: ${if_gpu:${trainer.accelerator},bf16-mixed,32-true}`` never autocasts a CPU run.

    ``auto`` counts as a GPU where the NVIDIA driver reports one, as Lightning would pick it.
    """
    from .checks import count_nvidia_gpus

    if str(accelerator) in GPU_ACCELERATORS:
        return on_gpu
    if str(accelerator) == "auto" and count_nvidia_gpus() != 0:
        return on_gpu
    return otherwise


def register_resolvers() -> None:
    # Cached in the config, so a job that Hydra re-composes from a sweep (e.g. on a SLURM node)
    # keeps the names its sweep resolved when it was launched.
    resolvers = {
        "run_id": run_id,
        "run_name": run_name,
        "sweep_name": sweep_name,
        "folder_name": folder_name,
        "config_options": help_options,
        "log_file": log_file_name,
        "if_gpu": if_gpu,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
