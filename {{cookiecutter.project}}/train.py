"""Train, then test, one model: ``python train.py [group=option ...] [key=value ...]``.

Hydra composes ``configs/train.yaml`` with the command line; ``-m`` sweeps over
comma-separated values. torch and Lightning are imported inside ``train`` so that
``--help`` and ``--cfg job`` answer at once.
"""

import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from {{cookiecutter.package_name}}.resolvers import register_resolvers

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
register_resolvers()


def train(cfg: DictConfig) -> float | None:
    """Run one training; return the best value of the monitored metric (for sweepers)."""
    started = time.time()
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from {{cookiecutter.package_name}} import runs
    from {{cookiecutter.package_name}}.components import build_callbacks, build_loggers
    from {{cookiecutter.package_name}}.lr_finder import find_lr

    output_dir = Path(cfg.paths.output_dir)
    runs.print_config(cfg)
    record = runs.RunRecord(cfg, output_dir, started)
    trainer = None
    try:
        pl.seed_everything(cfg.seed, workers=True)
        torch.set_float32_matmul_precision(cfg.matmul_precision)

        datamodule = instantiate(cfg.data)
        model = instantiate(cfg.model, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
        loggers = build_loggers(cfg.logger)
        callbacks = build_callbacks(
            cfg.callbacks, has_logger=bool(loggers), has_scheduler=cfg.model.scheduler is not None
        )
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

        if cfg.tune_lr:
            record.record(lr_find=find_lr(trainer, model, datamodule, output_dir))

        trainer.fit(model, datamodule=datamodule, ckpt_path=runs.resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir))
        record.record_trainer(trainer)
        if cfg.test:
            best = getattr(trainer.checkpoint_callback, "best_model_path", None)
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        return record.finish(trainer)
    except BaseException as error:
        record.fail(error, trainer)
        raise
    finally:
        runs.finish_wandb(failed=record.data["status"] != "completed")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
