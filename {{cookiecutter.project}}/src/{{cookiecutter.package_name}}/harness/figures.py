"""Matplotlib figures as images in every logger that shows images (TensorBoard, W&B)."""

from typing import Any


def takes_images(logger: Any) -> bool:
    from pytorch_lightning.loggers import TensorBoardLogger

    return isinstance(logger, TensorBoardLogger) or hasattr(logger, "log_image")


def to_image(figure: Any):
    """The figure as an RGB ``uint8`` array (height, width, 3), drawn off screen whatever the backend."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_figure(loggers: list, key: str, figure: Any, step: int) -> None:
    """Draw ``figure`` once and log it to each logger that takes images; other loggers are skipped."""
    targets = [logger for logger in loggers if takes_images(logger)]
    if not targets:
        return
    image = to_image(figure)
    for logger in targets:
        if hasattr(logger, "log_image"):
            logger.log_image(key, [image], step=step)
        else:
            logger.experiment.add_image(key, image, step, dataformats="HWC")
