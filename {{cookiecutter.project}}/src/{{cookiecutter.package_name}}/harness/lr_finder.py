"""Lightning's learning-rate finder, with its plot kept in the run directory, and its suggestion checked.

Lightning suggests the rate where the loss falls fastest against the rate itself, not its logarithm:
where the curve is flat at tiny rates, noise between points a hair apart wins (the default model on
digits got 3.6e-6, and trained to 9% accuracy). A suggestion is used only where the loss really falls
around it; otherwise the run keeps the configured rate and says why, in the log and in summary.json.
"""

import logging
import math
from pathlib import Path

from .figures import log_figure

log = logging.getLogger(__name__)

# Across the decade of rates centred on the suggestion, the loss must fall by this fraction.
MIN_FALL_PER_DECADE = 0.05


def find_lr(trainer, model, datamodule, output_dir: Path, **lr_find_kwargs) -> dict:
    """Run the range test, set the suggested rate on ``model`` if the curve falls there, and return what happened."""
    from pytorch_lightning.tuner import Tuner

    configured = model.lr
    # Lightning's finder also stops at max_epochs: a short run, or few batches per epoch, would leave it
    # too few points for a suggestion. Its own step limit (num_training) bounds it instead.
    max_epochs, trainer.fit_loop.max_epochs = trainer.fit_loop.max_epochs, -1
    try:
        finder = Tuner(trainer).lr_find(model, datamodule=datamodule, update_attr=False, **lr_find_kwargs)
    finally:
        trainer.fit_loop.max_epochs = max_epochs
    suggestion = finder.suggestion() if finder is not None else None
    if suggestion is None:
        rejected = "the finder gave no suggestion (too few batches for its range test)"
    else:
        fall = fall_per_decade(finder.results["lr"], finder.results["loss"], suggestion)
        rejected = None
        if not fall >= MIN_FALL_PER_DECADE:
            rejected = (
                f"the loss curve is flat there (it falls {fall:.1%} across the decade of rates around it, less than "
                f"{MIN_FALL_PER_DECADE:.0%}), so the suggestion is noise; see lr_find.png"
            )
    if rejected is None:
        model.lr = suggestion
        log.info("Learning-rate finder suggests %s; training with it", suggestion)
    else:
        log.warning("Learning-rate finder: %s. Training with the configured lr=%s.", rejected, configured)
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
    found = {"suggested_lr": suggestion, "lr": model.lr, "plot": str(plot_path) if plot_path else None}
    return found if rejected is None else {**found, "rejected": rejected}


def fall_per_decade(lrs: list[float], losses: list[float], at: float) -> float:
    """How much the (smoothed) loss falls from ``at / sqrt(10)`` to ``at * sqrt(10)``, as a fraction of it at ``at``."""
    points = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]
    if not points:
        return math.nan

    def loss_near(rate: float) -> float:
        return min(points, key=lambda point: abs(math.log(point[0] / rate)))[1]

    low, here, high = (loss_near(at * 10**shift) for shift in (-0.5, 0.0, 0.5))
    return (low - high) / abs(here) if here else math.nan
