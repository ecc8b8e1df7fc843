"""Continuing a SLURM job that was requeued (time limit, pre-emption) from its requeue checkpoint.

On SIGUSR1 (sent by SLURM ``signal_delay_s`` before the time limit, see
``configs/cluster/slurm.yaml``, or by ``scancel --signal=USR1``) or SIGTERM, every rank stops at
the same step boundary after one ``hpc_ckpt_<n>.ckpt`` in the trainer's ``default_root_dir`` (the
run folder), and rank 0 runs ``scontrol requeue`` for SIGUSR1 (preemption.py). The job then starts
again with the same id, so in the same run folder, and continues from that checkpoint, which
Lightning finds by the same name: same global step, same TensorBoard folder, same W&B run.
submitit only submits; it never requeues (nothing sends it SIGUSR2).
"""

import os
from pathlib import Path

from .distributed import is_global_zero


def hpc_checkpoints(run_dir: str | Path) -> list[Path]:
    """Lightning's requeue checkpoints in ``run_dir``, oldest first."""
    numbered = {path: path.stem.rpartition("_")[2] for path in Path(run_dir).glob("hpc_ckpt_*.ckpt")}
    return sorted((path for path, n in numbered.items() if n.isdigit()), key=lambda path: int(numbered[path]))


def next_hpc_checkpoint(run_dir: str | Path) -> Path:
    """Where the next requeue checkpoint goes: numbered one above the newest, as Lightning numbers them."""
    found = hpc_checkpoints(run_dir)
    number = int(found[-1].stem.rpartition("_")[2]) + 1 if found else 1
    return Path(run_dir) / f"hpc_ckpt_{number}.ckpt"


def resume_path(ckpt_path: str | None, run_dir: str | Path) -> str | None:
    """The checkpoint ``trainer.fit`` starts from: this run's own requeue checkpoint when there is one.

    Lightning looks for it only when ``ckpt_path`` is None; a job started with ``ckpt_path=...``
    would otherwise go back to that checkpoint after every requeue. Older requeue checkpoints
    are deleted, so a job requeued many times keeps one.
    """
    found = hpc_checkpoints(run_dir)
    if not found:
        # Requeued without a requeue checkpoint (a failed node, a kill before the next step): continue
        # from this run's newest regular checkpoint rather than start again.
        last = Path(run_dir) / "checkpoints" / "last.ckpt"
        if int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0 and last.is_file():
            return str(last)
        return ckpt_path
    if is_global_zero():
        for stale in found[:-1]:
            stale.unlink(missing_ok=True)
    return "hpc"
