"""A log file per process in the run folder, and which process failed first.

Hydra's log file is named per process (``configs/hydra/default.yaml``): global rank 0 keeps
``train.log``; every other rank writes ``rank<k>.log`` beside it, whichever launcher started it
(Lightning's, torchrun, srun). A process that fails writes its traceback into its own log file
and a record of the failure, ``rank<k>.error.json``. In a distributed job the other ranks then
fail too, on the broken connection; rank 0 reads the records and ``summary.json`` names the
first rank to fail and its error.
"""

import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from .distributed import _srun_used
from .secret_env import redact

log = logging.getLogger(__name__)

ERROR_SUFFIX = ".error.json"


def process_name() -> str:
    """``rank<global rank>`` as the launcher tells it, before any Trainer exists."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env:
        return f"rank{env.get('RANK', 0)}"
    if _srun_used():
        return f"rank{env.get('SLURM_PROCID', 0)}"
    # Lightning's own launcher: LOCAL_RANK in the processes it starts, NODE_RANK from the user on each node.
    node, local = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))), int(env.get("LOCAL_RANK", 0))
    # Its other nodes do not know their processes per node before the Trainer exists: named by node.
    return f"rank{local}" if node == 0 else f"node{node}-rank{local}"


def log_file_name() -> str:
    """Hydra's log file for this process: Hydra's own ``<job name>.log`` on global rank 0, ``rank<k>.log`` elsewhere.

    Lightning's launcher names the job of each rank it starts ``train_ddp_process_<k>``: only rank 0's is used.
    """
    from hydra.core.hydra_config import HydraConfig

    name = process_name()
    return f"{HydraConfig.get().job.name}.log" if name == "rank0" else f"{name}.log"


def record_failure(run_dir: Path, error: BaseException) -> None:
    """Put ``error``'s traceback into this process's log file and leave a record of it in ``run_dir``."""
    text = redact("".join(traceback.format_exception(error)).rstrip())
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "This process failed:\n%s", (text,), None)
    # Only the files: Hydra prints the traceback on the console already.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    name = process_name()
    rank = name.removeprefix("rank")
    failure = {
        "rank": int(rank) if rank.isdigit() else name,
        "error": redact(f"{type(error).__name__}: {error}"),
        "time": time.time(),
        "log": _log_file_name(),
    }
    try:
        path = run_dir / f"{name}{ERROR_SUFFIX}"
        path.write_text(json.dumps(failure, indent=2) + "\n", encoding="utf-8")
    except OSError as problem:  # the run folder is gone or full: the error itself must still surface
        log.warning("Could not record the failure in %s: %s", run_dir, problem)


def first_failure(run_dir: Path, since: float) -> dict[str, Any] | None:
    """The earliest failure recorded in ``run_dir`` at or after ``since`` (a requeued job keeps older ones)."""
    failures = []
    for path in run_dir.glob(f"*{ERROR_SUFFIX}"):
        try:
            failure = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if failure.get("time", 0) >= since:
            failures.append(failure)
    return min(failures, key=lambda failure: failure["time"], default=None)


def _log_file_name() -> str | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename).name
    return None
