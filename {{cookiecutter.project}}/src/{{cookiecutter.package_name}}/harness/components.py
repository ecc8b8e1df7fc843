"""Build callbacks and loggers from their config groups.

Each group is a mapping of name -> Hydra config, so several can be combined
(``logger=many``) and any one switched off with ``callbacks.early_stopping=null``.
Loggers and bookkeeping callbacks are guarded (callbacks/bookkeeping.py): their failures are
reported without stopping training. Loggers get no secret values (secret_env.py).
"""

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .callbacks.bookkeeping import Bookkeeping, is_bookkeeping
from .secret_env import redact_hyperparameters, without_secret_values
from .wandb_run import is_wandb_logger, with_run_id

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> dict:
    if not group:
        return {}
    return {name: instantiate(conf) for name, conf in group.items() if conf is not None and "_target_" in conf}


def build_loggers(
    cfg: DictConfig | None,
    bookkeeping: Bookkeeping | None = None,
    *,
    run_dir: Path | None = None,
    ckpt_path: str | None = None,
) -> list:
    """``run_dir`` and ``ckpt_path`` pick the W&B run id: a resumed run continues its W&B run."""
    loggers = []
    for name, conf in (cfg or {}).items():
        if conf is None or "_target_" not in conf:
            continue
        if run_dir is not None and is_wandb_logger(conf):
            conf = with_run_id(conf, run_dir, ckpt_path)
        logger = instantiate(without_secret_values(OmegaConf.to_container(conf, resolve=True)))
        redact_hyperparameters(logger)
        loggers.append(bookkeeping.guard_logger(logger, f"logger {name}") if bookkeeping else logger)
    return loggers


def build_callbacks(
    cfg: DictConfig | None, *, has_logger: bool, has_scheduler: bool, bookkeeping: Bookkeeping | None = None
) -> list:
    from pytorch_lightning.callbacks import LearningRateMonitor

    callbacks = _instantiate_all(cfg)
    for name, callback in list(callbacks.items()):
        # Lightning refuses a LearningRateMonitor without a logger; without a scheduler it only logs a constant.
        if isinstance(callback, LearningRateMonitor) and not (has_logger and has_scheduler):
            log.info("Callback %r left out: it needs a logger and an LR scheduler.", name)
            del callbacks[name]
        elif bookkeeping is not None and is_bookkeeping(callback):
            bookkeeping.guard_callback(callback, f"callback {name}")
    return list(callbacks.values())
