"""The resolved config in every logger at the start; TensorBoard's hparams tab with the final metrics at the end."""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from .distributed import is_global_zero
from .secret_env import redact

# The hparams tab reads its metrics from scalars of these names, kept apart from the training curves.
FINAL_PREFIX = "final/"


def loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """Plain values, every interpolation resolved, secrets redacted."""
    return redact(OmegaConf.to_container(cfg, resolve=True))


def log_config(loggers: list, cfg: DictConfig) -> None:
    # Before the Trainer has set up the ranks, Lightning's own rank-zero check can miss other nodes.
    if not is_global_zero():
        return
    for logger in loggers:
        logger.log_hyperparams(loggable_config(cfg))


def log_final_metrics(loggers: list, cfg: DictConfig, metrics: dict[str, float], step: int) -> None:
    """One row of TensorBoard's hparams tab: this run's config and final metrics (only rank 0 writes)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            final = {FINAL_PREFIX + name: value for name, value in metrics.items()}
            logger.log_hyperparams(loggable_config(cfg), metrics=final, step=step)
            # Through the logger (guarded, see callbacks/bookkeeping.py): its folder may have become unwritable.
            logger.save()
