"""Validation and test count each example once, whatever the number of processes, for any DataModule.

Under DDP Lightning gives every evaluation loader a ``DistributedSampler``, which pads the shards
by repeating examples so that all processes run equally many batches: with 151 examples on two
processes, one example is counted twice. Loaders whose sampler is already distributed are left
alone, so the harness hands Lightning loaders with ``UnrepeatedDistributedSampler`` instead:
shards of 76 and 75, every example once. Metrics that sum over examples across processes
(torchmetrics) then equal a single-process evaluation of the same weights.
"""

import functools
from typing import Any

EVALUATION_LOADERS = ("val_dataloader", "test_dataloader")


def evaluate_exactly(datamodule: Any) -> None:
    """Wrap the DataModule's evaluation loaders, on this instance only."""
    for name in EVALUATION_LOADERS:
        original = getattr(datamodule, name, None)
        if original is None or getattr(original, "_evaluates_exactly", False):
            continue

        @functools.wraps(original)
        def loaders(original=original):
            from lightning_utilities.core.apply_func import apply_to_collection
            from torch.utils.data import DataLoader

            made = original()
            trainer = datamodule.trainer
            if trainer is None or trainer.world_size == 1:
                return made
            return apply_to_collection(made, DataLoader, unrepeated, trainer.world_size, trainer.global_rank)

        loaders._evaluates_exactly = True
        setattr(datamodule, name, loaders)


def unrepeated(loader, world_size: int, rank: int):
    """``loader`` with each example given to exactly one of ``world_size`` processes."""
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
    from pytorch_lightning.utilities.data import _update_dataloader, has_iterable_dataset
    from torch.utils.data import DistributedSampler, SequentialSampler

    if has_iterable_dataset(loader) or isinstance(loader.sampler, DistributedSampler):
        return loader  # an iterable dataset shards itself; a distributed sampler was chosen on purpose
    if not isinstance(loader.sampler, SequentialSampler):
        raise ValueError(
            f"{type(loader.sampler).__name__}: evaluation loaders must not shuffle or sample; with several "
            "processes each example must be evaluated once. Use DataLoader(..., shuffle=False)."
        )
    sampler = UnrepeatedDistributedSampler(loader.dataset, num_replicas=world_size, rank=rank, shuffle=False)
    return _update_dataloader(loader, sampler)
