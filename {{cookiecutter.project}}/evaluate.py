"""Test a finished run's checkpoint, or predict with it: ``python evaluate.py <run dir> [option=value ...]``.

    python evaluate.py logs/train/runs/<run>                     # the test split, best checkpoint
    python evaluate.py logs/train/runs/<run> ckpt=last split=val # another checkpoint, the validation split
    python evaluate.py logs/train/runs/<run> predict=new_images/ # predictions for new inputs

The run's own resolved config (``config_resolved.yaml``) builds its DataModule and model, and the
checkpoint's weights are loaded into the model, so inputs are preprocessed as in training: raw
inputs give what the trained model gives. Any ``key=value`` changes that config (e.g.
``data.root=...`` where the data has moved, ``trainer.accelerator=cpu``). Results go into the run
folder: ``evaluation/<split>-<checkpoint>.json``, or ``predictions/<inputs>-<checkpoint>.csv``
(one row per example). One process, on one device.
"""

import argparse
import datetime as dt
import sys
import warnings
from pathlib import Path

from {{cookiecutter.package_name}}.harness.finished_runs import RunFolderError

SPLITS = {"test": "test", "val": "validate"}


def evaluate(
    run_dir: Path,
    ckpt: str = "best",
    split: str = "test",
    predict: str | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Evaluate (or predict with) the run's checkpoint; return the file the results went to."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from lightning_fabric.accelerators.cuda import num_cuda_devices
    from omegaconf import open_dict

    from {{cookiecutter.package_name}}.harness import contract, finished_runs
    from {{cookiecutter.package_name}}.harness.predictions import PredictionWriter
    from {{cookiecutter.package_name}}.harness.runs import write_json

    overrides = list(overrides or [])
    cfg = finished_runs.load_config(run_dir, overrides)
    checkpoint = finished_runs.checkpoint(run_dir, ckpt)
    if str(cfg.trainer.accelerator) in ("gpu", "cuda") and num_cuda_devices() == 0:
        raise RunFolderError(
            f"The run trained with trainer.accelerator={cfg.trainer.accelerator}, and torch finds no GPU here: "
            "add trainer.accelerator=cpu (and trainer.precision=32-true if the run used 16-mixed)."
        )
    if predict is not None:
        if not Path(predict).exists():
            raise RunFolderError(f"predict={predict}: no such file or folder.")
        if "predict_path" not in cfg.data:
            raise RunFolderError(
                f"predict={predict}: {cfg.data._target_} takes no predict_path. Give it a predict_path argument and "
                "a predict_dataloader that reads it (README: Your own model and data)."
            )
        with open_dict(cfg):
            cfg.data.predict_path = str(Path(predict).resolve())

    pl.seed_everything(cfg.seed, workers=True)
    datamodule, model = contract.build(cfg)
    name = f"{Path(predict).stem if predict is not None else split}-{checkpoint.stem}"
    out = run_dir / ("predictions" if predict is not None else "evaluation") / f"{name}.{'csv' if predict else 'json'}"
    trainer = instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        logger=False,
        enable_checkpointing=False,
        callbacks=[PredictionWriter(out)] if predict is not None else [],
    )
    weights_only = cfg.get("ckpt_weights_only", True)
    # Lightning asks for the training callbacks whose state the checkpoint holds; testing and predicting need none.
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks used")
    if predict is not None:
        trainer.predict(
            model, datamodule=datamodule, ckpt_path=checkpoint, return_predictions=False, weights_only=weights_only
        )
    else:
        run = getattr(trainer, SPLITS[split])
        (metrics,) = run(model, datamodule=datamodule, ckpt_path=checkpoint, weights_only=weights_only)
        out.parent.mkdir(exist_ok=True)
        write_json(
            out,
            {
                "checkpoint": str(checkpoint),
                "split": split,
                "metrics": metrics,
                "overrides": overrides,
                "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
    print(f"Written to {out}")
    return out


def main(argv: list[str] | None = None) -> Path:
    summary, details = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        description=summary, epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. logs/train/runs/<date>_<time>_<id>")
    parser.add_argument(
        "options",
        nargs="*",
        metavar="option=value",
        help="ckpt=best|last|PATH (default best), split=test|val (default test), predict=PATH, or key=value to "
        "change the run's config",
    )
    args = parser.parse_args(argv)
    chosen = {"ckpt": "best", "split": "test", "predict": None}
    overrides = []
    for option in args.options:
        key, equals, value = option.partition("=")
        if key in chosen and equals:
            chosen[key] = value
        else:
            overrides.append(option)
    if chosen["split"] not in SPLITS:
        parser.error(f"split={chosen['split']}: use split=test or split=val.")
    try:
        return evaluate(args.run_dir, overrides=overrides, **chosen)
    except RunFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
