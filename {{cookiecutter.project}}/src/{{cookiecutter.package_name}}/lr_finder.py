"""Lightning's learning-rate finder, with its plot kept in the run directory."""

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def find_lr(trainer, model, datamodule, output_dir: Path, **lr_find_kwargs) -> dict:
    """Run the range test, set the suggested rate on ``model`` and return what happened."""
    from pytorch_lightning.tuner import Tuner

    finder = Tuner(trainer).lr_find(model, datamodule=datamodule, update_attr=True, **lr_find_kwargs)
    suggestion = finder.suggestion() if finder is not None else None
    plot_path = None
    if finder is not None and trainer.is_global_zero:
        import matplotlib

        matplotlib.use("Agg")
        figure = finder.plot(suggest=True)
        plot_path = output_dir / "lr_find.png"
        figure.savefig(plot_path, dpi=100)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_figure"):
                experiment.add_figure("lr_find", figure)
        import matplotlib.pyplot as plt

        plt.close(figure)
    log.info("Learning-rate finder suggests %s; training with lr=%s", suggestion, model.lr)
    return {"suggested_lr": suggestion, "lr": model.lr, "plot": str(plot_path) if plot_path else None}
