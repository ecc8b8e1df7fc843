"""The optimizer and scheduler of a model whose config gives them as Hydra configs (``_partial_: true``)."""

from collections.abc import Iterable, Mapping

import torch
from hydra.utils import instantiate

# Optimizers with a fused implementation (one operation for all parameters instead of several per tensor,
# which small networks feel most), used on these devices unless the config sets fused or foreach.
FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
FUSED_DEVICES = ("cpu", "cuda")


def configure_optimizers(
    parameters: Iterable[torch.nn.Parameter], optimizer: Mapping, scheduler: Mapping | None, device: torch.device
):
    """What ``LightningModule.configure_optimizers`` returns: the optimizer, or Lightning's dict form with the
    scheduler and its keys (``interval``, ``frequency``, ``monitor``) where ``scheduler`` is set."""
    make_optimizer = instantiate(optimizer)
    extra = {}
    chosen = {"fused", "foreach"} & make_optimizer.keywords.keys()
    if make_optimizer.func in FUSABLE and not chosen and device.type in FUSED_DEVICES:
        # +model.optimizer.fused=false opts out.
        extra["fused"] = True
    built = make_optimizer(params=parameters, **extra)
    if scheduler is None:
        return built
    settings = dict(scheduler)
    make_scheduler = instantiate(settings.pop("scheduler"))
    return {"optimizer": built, "lr_scheduler": {"scheduler": make_scheduler(optimizer=built), **settings}}
