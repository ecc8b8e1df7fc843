"""A training order that depends on the seed and the epoch alone, handed out a batch of indices at a time.

PyTorch's ``RandomSampler`` draws its order from the global random generator, whose state
after a restart differs from that of an uninterrupted run, so a resumed run would see its
epochs in another order. This sampler takes a fresh generator seeded with ``seed + epoch``
(Lightning calls ``set_epoch`` before every epoch), as ``DistributedSampler`` does; under DDP,
Lightning replaces it with exactly that.
"""

import torch
from torch.utils.data import BatchSampler, RandomSampler


class EpochShuffle(RandomSampler):
    def __init__(self, data_source, seed: int | None = None):
        super().__init__(data_source)
        # seed_everything(seed) has seeded the global generator: its seed is the run's.
        self.seed = torch.initial_seed() if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This epoch's order, as one tensor."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.data_source), generator=generator)

    def __iter__(self):
        yield from self.indices().tolist()


class TensorBatchSampler(BatchSampler):
    """A BatchSampler that yields each batch's indices as a tensor, cut from one tensor per epoch.

    PyTorch's BatchSampler gathers a batch one index at a time, in Python, and the dataset turns
    the list back into a tensor: ~25 us of a small MLP's ~2 ms step on a CPU. Under DDP Lightning
    builds this class again around its DistributedSampler (same arguments, as for any BatchSampler),
    whose indices are then read once per epoch.
    """

    def __iter__(self):
        # A generator, so that the order is drawn at the first batch: a resumed run's first epoch gets
        # its iterator before Lightning calls set_epoch.
        if isinstance(self.sampler, EpochShuffle):
            indices = self.sampler.indices()
        else:
            indices = torch.tensor(list(self.sampler), dtype=torch.long)
        batches = list(indices.split(self.batch_size)) if len(indices) else []
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        yield from batches


def loader_generator(seed: int | None = None) -> torch.Generator:
    """A generator of its own for a DataLoader, which otherwise draws its workers' base seed from the global one."""
    return torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)
