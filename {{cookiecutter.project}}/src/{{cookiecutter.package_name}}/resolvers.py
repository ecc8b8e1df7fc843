"""OmegaConf resolvers that the configs use; registered before Hydra composes them."""

import functools
import os
import secrets

from omegaconf import OmegaConf


@functools.cache
def run_id() -> str:
    """An id shared by every process of one run, and unique between runs.

    Ranks started by an external launcher (srun, torchrun) each compose the config
    themselves, so the id must come from the launcher; otherwise a random token keeps
    two runs started in the same second apart.
    """
    if job := os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    for variable in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "RUN_ID"):
        if (value := os.environ.get(variable)) and value != "none":
            return value
    return secrets.token_hex(3)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id)
