"""Train, then test, one model: ``python train.py [group=option ...] [key=value ...]``.

Hydra composes ``configs/train.yaml`` with the command line; ``-m`` sweeps over
comma-separated values. torch and Lightning are imported inside ``train`` so that
``--help`` and ``--cfg job`` answer at once.
"""

import os
import signal
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from {{cookiecutter.package_name}}.harness.resolvers import register_resolvers
from {{cookiecutter.package_name}}.harness.secret_env import load_dotenv, redact_output

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
load_dotenv(Path(__file__).resolve().parent / ".env")
redact_output()
register_resolvers()


def train(cfg: DictConfig) -> float | None:
    """Run one training; return the best value of the monitored metric (for sweepers)."""
    started = time.time()
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from {{cookiecutter.package_name}}.harness import contract, devices, hparams, preemption, rank_logs, runs, wandb_run
    from {{cookiecutter.package_name}}.harness.callbacks import Bookkeeping, RunProgress
    from {{cookiecutter.package_name}}.harness.checkpointing import check_fits
    from {{cookiecutter.package_name}}.harness.components import build_callbacks, build_loggers
    from {{cookiecutter.package_name}}.harness.distributed import check_multirun_launch
    from {{cookiecutter.package_name}}.harness.lr_finder import find_lr
    from {{cookiecutter.package_name}}.harness.performance import NoProfiler, configure_torch
    from {{cookiecutter.package_name}}.harness.requeue import resume_path
    from {{cookiecutter.package_name}}.harness.resume import resolve_ckpt_path
    from {{cookiecutter.package_name}}.harness.sampling import ResumeMidEpoch
    from {{cookiecutter.package_name}}.harness.sweeps import continue_sweep, summarise_stopped_sweep

    # Again for a job that submitit unpickles: it skips this module's top level.
    redact_output()
    # SIGUSR1/SIGTERM are noted from here on and acted on at a step boundary (preemption.py).
    preemption.install()
    output_dir = Path(cfg.paths.output_dir)
    runs.print_config(cfg)
    record = runs.RunRecord(cfg, output_dir, started)
    trainer = None
    try:
        pl.seed_everything(cfg.seed, workers=True)
        configure_torch(cfg.matmul_precision)

        devices.check(cfg.trainer.accelerator)
        # ckpt_path=last: the newest checkpoint of this experiment (resume.py); a requeued SLURM job
        # continues from its own requeue checkpoint (requeue.py).
        ckpt_path = resume_path(resolve_ckpt_path(cfg, record), output_dir)
        datamodule, model = contract.build(cfg)
        check_fits(ckpt_path, model, weights_only=cfg.ckpt_weights_only)
        # A failing logger or plot is reported in summary.json; training goes on.
        bookkeeping = Bookkeeping(on_error=lambda errors: record.record(bookkeeping_errors=errors))
        loggers = build_loggers(cfg.logger, bookkeeping, run_dir=output_dir, ckpt_path=ckpt_path)
        callbacks = build_callbacks(
            cfg.callbacks,
            has_logger=bool(loggers),
            has_scheduler=cfg.model.get("scheduler") is not None,
            bookkeeping=bookkeeping,
        )
        trainer = instantiate(
            cfg.trainer,
            callbacks=[*callbacks, RunProgress(record), ResumeMidEpoch(), preemption.Preemption()],
            logger=loggers or False,
            profiler=cfg.trainer.profiler or NoProfiler(),
        )
        check_multirun_launch(trainer)
        hparams.log_config(trainer.loggers, cfg)

        if cfg.tune_lr:
            record.record(lr_find=find_lr(trainer, model, datamodule, output_dir))

        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=cfg.ckpt_weights_only)
        record.record_trainer(trainer)
        if cfg.test:
            best = getattr(trainer.checkpoint_callback, "best_model_path", None)
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=cfg.ckpt_weights_only)
        result = record.finish(trainer)
        hparams.log_final_metrics(trainer.loggers, cfg, record.data["metrics"], trainer.global_step)
        return result
    except preemption.Preempted as stop:
        record.stop("requeued" if stop.requeued else "interrupted", str(stop), trainer)
        summarise_stopped_sweep(cfg)
        # Exit status 0 for a requeued job: SLURM starts it again; submitit records no result meanwhile.
        raise SystemExit(stop.exit_code) from None
    except BaseException as error:
        # Each process's traceback goes into its own log file; summary.json names the rank that failed first.
        rank_logs.record_failure(output_dir, error)
        record.data["first_failure"] = rank_logs.first_failure(output_dir, since=started)
        record.fail(error, trainer)
        if runs.ctrl_c(error):
            summarise_stopped_sweep(cfg)
            # What a shell reports for a process ended by SIGINT, not Lightning's exit status 1.
            raise SystemExit(128 + signal.SIGINT) from None
        if not continue_sweep(error):
            raise
        return None
    finally:
        wandb_run.finish(failed=record.data["status"] not in ("completed", "requeued"))
        preemption.stand_down()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
