"""Build callbacks and loggers from their config groups.

Each group is a mapping of name -> Hydra config, so several can be combined
(``logger=many``) and any one switched off with ``callbacks.early_stopping=null``.
"""

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> dict:
    if not group:
        return {}
    return {name: instantiate(conf) for name, conf in group.items() if conf is not None and "_target_" in conf}


def build_loggers(cfg: DictConfig | None) -> list:
    return list(_instantiate_all(cfg).values())


def build_callbacks(cfg: DictConfig | None, *, has_logger: bool, has_scheduler: bool) -> list:
    from pytorch_lightning.callbacks import LearningRateMonitor

    callbacks = _instantiate_all(cfg)
    for name, callback in list(callbacks.items()):
        # Lightning refuses a LearningRateMonitor without a logger; without a scheduler it only logs a constant.
        if isinstance(callback, LearningRateMonitor) and not (has_logger and has_scheduler):
            log.info("Callback %r left out: it needs a logger and an LR scheduler.", name)
            del callbacks[name]
    return list(callbacks.values())
