"""Continuing a SLURM job that was requeued (time limit, pre-emption): one owner, Lightning.

Lightning's SLURM environment catches SIGUSR1 (sent by SLURM ``signal_delay_s`` before the time
limit, see ``configs/cluster/slurm.yaml``, or by ``scancel --signal=USR1``), writes
``hpc_ckpt_<n>.ckpt`` into the trainer's ``default_root_dir`` (the run folder) and runs
``scontrol requeue``. The job then starts again with the same id, so in the same run folder,
and continues from that checkpoint: same global step, same TensorBoard folder, same W&B run.
submitit only submits; it never requeues (nothing sends it SIGUSR2).
"""

import os
from pathlib import Path

from .distributed import is_global_zero


def hpc_checkpoints(run_dir: str | Path) -> list[Path]:
    """Lightning's requeue checkpoints in ``run_dir``, oldest first."""
    numbered = {path: path.stem.rpartition("_")[2] for path in Path(run_dir).glob("hpc_ckpt_*.ckpt")}
    return sorted((path for path, n in numbered.items() if n.isdigit()), key=lambda path: int(numbered[path]))


def resume_path(ckpt_path: str | None, run_dir: str | Path) -> str | None:
    """The checkpoint ``trainer.fit`` starts from: this run's own requeue checkpoint when there is one.

    Lightning looks for it only when ``ckpt_path`` is None; a job started with ``ckpt_path=...``
    would otherwise go back to that checkpoint after every requeue. Older requeue checkpoints
    are deleted, so a job requeued many times keeps one.
    """
    found = hpc_checkpoints(run_dir)
    if not found:
        # Requeued without Lightning's signal (pre-emption by SIGTERM, a failed node): continue
        # from this run's newest regular checkpoint rather than start again.
        last = Path(run_dir) / "checkpoints" / "last.ckpt"
        if int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0 and last.is_file():
            return str(last)
        return ckpt_path
    if is_global_zero():
        for stale in found[:-1]:
            stale.unlink(missing_ok=True)
    return "hpc"
