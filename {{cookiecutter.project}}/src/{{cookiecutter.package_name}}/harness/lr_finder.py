"""Lightning's learning-rate finder, with its plot kept in the run directory."""

import logging
from pathlib import Path

from .figures import log_figure

log = logging.getLogger(__name__)


def find_lr(trainer, model, datamodule, output_dir: Path, **lr_find_kwargs) -> dict:
    """Run the range test, set the suggested rate on ``model`` and return what happened."""
    from pytorch_lightning.tuner import Tuner

    # Lightning's finder also stops at max_epochs: a short run, or few batches per epoch, would leave it
    # too few points for a suggestion. Its own step limit (num_training) bounds it instead.
    max_epochs, trainer.fit_loop.max_epochs = trainer.fit_loop.max_epochs, -1
    try:
        finder = Tuner(trainer).lr_find(model, datamodule=datamodule, update_attr=True, **lr_find_kwargs)
    finally:
        trainer.fit_loop.max_epochs = max_epochs
    suggestion = finder.suggestion() if finder is not None else None
    if suggestion is None:
        log.warning("The learning-rate finder gave no suggestion; training with the configured lr=%s", model.lr)
    plot_path = None
    if finder is not None and trainer.is_global_zero:
        import matplotlib

        matplotlib.use("Agg")
        figure = finder.plot(suggest=True)
        plot_path = output_dir / "lr_find.png"
        figure.savefig(plot_path, dpi=100)
        log_figure(trainer.loggers, "lr_find", figure, step=0)
        import matplotlib.pyplot as plt

        plt.close(figure)
    log.info("Learning-rate finder suggests %s; training with lr=%s", suggestion, model.lr)
    return {"suggested_lr": suggestion, "lr": model.lr, "plot": str(plot_path) if plot_path else None}
