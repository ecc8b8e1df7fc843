"""Checkpoints that survive a crash, resume exactly, and do not fill the disk.

- ``AtomicCheckpointIO`` (``trainer.plugins``): Lightning writes a checkpoint into a temporary
  file under ``$TMPDIR`` and moves it into place; when the run folder is on another filesystem
  (scratch, NFS, Lustre), that move is a copy, and a job killed during it leaves a truncated
  ``last.ckpt`` that ``ckpt_path=last`` would pick. Here the temporary file sits next to the
  checkpoint, is flushed to disk, then renamed over it: the old file or the new one, never half.
  Temporaries of killed writes are removed at the next save into that folder (e.g. by a requeued job).
- ``RandomStateCheckpoint``: stores the random generators' states in each checkpoint and puts
  them back when training resumes, so that the resumed epochs shuffle (and drop out) as an
  uninterrupted run would.

Disk use stays bounded: ModelCheckpoint keeps ``save_top_k`` checkpoints plus last.ckpt, and
``requeue.resume_path`` keeps one of Lightning's SLURM requeue checkpoints (hpc_ckpt_N.ckpt).
"""

import contextlib
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


def _temporary(path: Path) -> Path:
    # Hidden, and not ending in .ckpt: neither ckpt_path=last nor ModelCheckpoint ever picks it up.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, ``fsync``, then ``os.replace``."""

    def __init__(self):
        super().__init__()
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            # Remote storage and its options: Lightning's own writer handles them.
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._cleaned:
            self._cleaned.add(path.parent)
            if stale := remove_stale_temporaries(path.parent):
                log.info("Removed %d unfinished checkpoint write(s) of a killed run: %s", len(stale), stale)
        tmp = _temporary(path)
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries that other processes left in ``folder`` (writes that were killed)."""
    ours = f".{os.getpid()}.tmp"
    stale = [p for p in Path(folder).glob(".*.ckpt.*.tmp") if p.is_file() and not p.name.endswith(ours)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class CheckpointMismatchError(ValueError):
    """The checkpoint holds the weights of another network; the message says which and what to do."""


def check_fits(ckpt_path: str | None, model: torch.nn.Module, *, weights_only: bool) -> None:
    """Fail before any data is loaded when ``ckpt_path`` holds weights that ``model`` cannot take.

    Lightning would find out only when it restores the checkpoint, and then print every key.
    """
    if ckpt_path is None or ckpt_path in ("hpc", "registry") or "://" in ckpt_path:
        return
    state = torch.load(ckpt_path, map_location="cpu", weights_only=weights_only, mmap=True)
    weights = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise CheckpointMismatchError(
            f"ckpt_path={ckpt_path} is not a Lightning checkpoint (it has no state_dict). Give a .ckpt file that "
            "a run saved, e.g. <run dir>/checkpoints/last.ckpt."
        )
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [
        f"{key} {tuple(weights[key].shape)} there, {tuple(value.shape)} here"
        for key, value in expected.items()
        if key in weights and hasattr(weights[key], "shape") and weights[key].shape != value.shape
    ]
    if missing or unexpected or reshaped:
        found = [
            f"{len(items)} {what} (e.g. {items[0]})"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
            if items
        ]
        raise CheckpointMismatchError(
            f"ckpt_path={ckpt_path} holds the weights of another network than this run's {type(model).__name__}: "
            f"{', '.join(found)} of {len(expected)} tensors. Resume it with the model config it was trained with "
            "(config_resolved.yaml in its run folder), or start without ckpt_path."
        )


def random_states() -> dict[str, Any]:
    """The generators' states as tensors and plain values, so checkpoints load with weights_only=True."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStateCheckpoint(pl.Callback):
    """Checkpoints carry global rank 0's random states; a resumed fit restores them when training starts.

    Not earlier: the sanity-check validation of a resumed run draws from the generators, which
    the uninterrupted run did not do at that point.
    """

    def __init__(self):
        self._restored: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._restored:
            set_random_states(self._restored)
            self._restored = None
