"""One W&B run per training run: its id is kept in the run directory, so a resumed run continues it.

The id is chosen before ``wandb.init`` (``WandbLogger(id=...)``) and written to ``<run dir>/wandb_id``
at once, so even a run that dies during start-up can be continued. Which id a run uses:

1. ``logger.wandb.id`` when set by hand;
2. the id stored in this run's own directory (a requeued job that restarts in the same folder);
3. the id stored in the directory of the checkpoint it resumes from (``ckpt_path=...``);
4. a new one.
"""

import logging
import secrets
import string
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from .distributed import is_global_zero

log = logging.getLogger(__name__)

ID_FILE = "wandb_id"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def is_wandb_logger(conf: DictConfig) -> bool:
    return str(conf.get("_target_", "")).endswith("WandbLogger")


def stored_id(run_dir: str | Path) -> str | None:
    """The W&B run id recorded in ``run_dir``, if any."""
    path = Path(run_dir) / ID_FILE
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def store_id(run_dir: str | Path, run_id: str) -> None:
    if is_global_zero():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / ID_FILE).write_text(run_id + "\n", encoding="utf-8")


def checkpoint_run_dir(ckpt_path: str | Path) -> Path:
    """The run directory a checkpoint was written into (``<run dir>/checkpoints/<file>.ckpt``)."""
    return Path(ckpt_path).resolve().parent.parent


def choose_id(explicit: str | None, run_dir: str | Path, ckpt_path: str | Path | None) -> str:
    """The W&B run id for this run (see the module docstring for the order)."""
    if explicit:
        return str(explicit)
    if found := stored_id(run_dir):
        return found
    # Not for Lightning's keywords ("hpc", "last"): only a checkpoint file has a run directory.
    if ckpt_path is not None and Path(ckpt_path).is_file() and (found := stored_id(checkpoint_run_dir(ckpt_path))):
        log.info("Resuming from %s: continuing W&B run %s", ckpt_path, found)
        return found
    # The same form as wandb's own ids; wandb itself is not imported to make one.
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def with_run_id(conf: DictConfig, run_dir: str | Path, ckpt_path: str | Path | None) -> DictConfig:
    """A copy of a WandbLogger config with its run id chosen and stored in ``run_dir``."""
    conf = OmegaConf.create(OmegaConf.to_container(conf, resolve=True))
    with open_dict(conf):
        conf.id = choose_id(conf.get("id"), run_dir, ckpt_path)
    store_id(run_dir, conf.id)
    return conf


def finish(failed: bool) -> None:
    """End this process's W&B run and stop wandb's service process.

    Without ``finish`` the next run of a multirun (same process) would log into this one; the
    service (``wandb-core``) would otherwise live on in a long-lived process such as a notebook
    or an in-process sweep, holding files and memory after training has ended.
    """
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    try:
        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
        wandb.teardown()
    except Exception as error:
        # E.g. SLURM stopped the service with the job (requeue, scancel): the error that ended
        # the run, or the requeue's SIGTERM, must reach the caller, not this one.
        log.warning("W&B could not finish this run (%r); its files stay in the run folder.", error)
