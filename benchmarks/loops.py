"""The training loops benchmarks/throughput.py compares a baked project with, written as a careful engineer would.

Each returns, per epoch, the samples trained and the seconds (wall clock and this process's CPU time) the
epoch took. They take the network, the optimizer and the data ready-made, so that every pipeline of a work
trains the same network on the same examples.

- ``in_memory``: the data one normalized tensor on the device (normalized once, before training), a fresh
  permutation each epoch, sliced into batches of indices, each gathering its rows. (Gathering per batch,
  into a block that stays in the cache, ran ~9% faster on a CPU than permuting the whole tensor once per
  epoch and slicing that: 73.6k against 67.7k MLP samples/s, one thread; ``index_select`` gathers a batch of
  MNIST images in 19 us where ``inputs[batch]`` takes 49, both from the cache.) With
  ``torch.optim.Adam(fused=True)`` this is the leanest loop there is for a small network: nothing but the
  step's own tensor work.
- ``lightning_bare``: the same batches and step inside Lightning's loop with everything Lightning can turn
  off turned off (no logger, checkpoint, progress bar or model summary): Lightning's own cost per step.
- ``image_folder``: torchvision's ``ImageFolder`` decoded by DataLoader workers, shuffled by the DataLoader.
"""

import time

import torch
from torch.nn import functional


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def elapsed(started: tuple[float, float], samples: int) -> dict[str, float]:
    (wall, cpu), (wall_started, cpu_started) = clock(), started
    return {"samples": samples, "seconds": wall - wall_started, "cpu_seconds": cpu - cpu_started}


def in_memory(net, optimizer, inputs, targets, batch_size: int, epochs: int) -> list[dict[str, float]]:
    """``inputs`` normalized already, on the device of ``net``. Counts targets: images, or a language model's tokens."""
    net.train()
    timed = []
    for _ in range(epochs):
        started = clock()
        for batch in torch.randperm(len(targets), device=targets.device).split(batch_size):
            x, y = inputs.index_select(0, batch), targets.index_select(0, batch)
            loss = functional.cross_entropy(net(x).flatten(0, -2), y.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        timed.append(elapsed(started, targets.numel()))
    return timed


def image_folder(net, optimizer, loader, device, epochs: int) -> list[dict[str, float]]:
    """``loader``: a DataLoader over a torchvision ImageFolder, its transform ending in a normalized tensor."""
    net.train()
    timed = []
    for _ in range(epochs):
        started, samples = clock(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            samples += len(y)
        timed.append(elapsed(started, samples))
    return timed


def lightning_bare(
    net, make_optimizer, inputs, targets, batch_size: int, epochs: int, profiler=None
) -> list[dict[str, float]]:
    """The step of ``in_memory`` as a LightningModule, fed the same slices, in a Trainer with everything off."""
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            return functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return make_optimizer(self.parameters())

    class Slices:
        """An epoch's batches: slices of the data in a fresh random order. Lightning takes any sized iterable."""

        def __len__(self):
            return -(-len(targets) // batch_size)

        def __iter__(self):
            for batch in torch.randperm(len(targets), device=targets.device).split(batch_size):
                yield inputs.index_select(0, batch), targets.index_select(0, batch)

    class EpochClock(pl.Callback):
        # One callback, as the baked runs have one to time them (benchmarks/epoch_timer.py).
        def __init__(self):
            self.timed, self.started = [], None

        def on_train_epoch_start(self, trainer, pl_module):
            self.started = clock()

        def on_train_epoch_end(self, trainer, pl_module):
            self.timed.append(elapsed(self.started, len(targets)))

    timer = EpochClock()
    trainer = pl.Trainer(
        accelerator="gpu" if targets.device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
        profiler=profiler,
    )
    trainer.fit(Module(), train_dataloaders=Slices())
    return timer.timed
