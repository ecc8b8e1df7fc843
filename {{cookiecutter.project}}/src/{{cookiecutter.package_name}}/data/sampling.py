"""A training order that depends on the seed and the epoch alone.

PyTorch's ``RandomSampler`` draws its order from the global random generator, whose state
after a restart differs from that of an uninterrupted run, so a resumed run would see its
epochs in another order. This sampler takes a fresh generator seeded with ``seed + epoch``
(Lightning calls ``set_epoch`` before every epoch), as ``DistributedSampler`` does; under DDP,
Lightning replaces it with exactly that.
"""

import torch
from torch.utils.data import RandomSampler


class EpochShuffle(RandomSampler):
    def __init__(self, data_source, seed: int | None = None):
        super().__init__(data_source)
        # seed_everything(seed) has seeded the global generator: its seed is the run's.
        self.seed = torch.initial_seed() if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def loader_generator(seed: int | None = None) -> torch.Generator:
    """A generator of its own for a DataLoader, which otherwise draws its workers' base seed from the global one."""
    return torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)
