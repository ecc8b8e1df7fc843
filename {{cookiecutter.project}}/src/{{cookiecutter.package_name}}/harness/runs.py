"""What a run leaves in its directory: resolved config, provenance and summary.json.

Only global rank 0 writes, so a multi-process run leaves one set of files. summary.json is
brought up to date after every validation (callbacks/run_progress.py) and at the end; it records
the process that wrote it, so that a run killed without a chance to say so (``kill -9``, a lost
node) reads as ``killed`` instead of ``running`` forever (``observed_status``).
"""

import datetime as dt
import errno
import json
import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .distributed import is_global_zero
from .provenance import MAX_PATCH_MB, provenance
from .secret_env import redact

log = logging.getLogger(__name__)


def write_json(path: Path, data: dict) -> None:
    """Write atomically, so that a reader never sees half a file; secrets are redacted before escaping."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(redact(data), indent=2, default=lambda value: redact(str(value)))
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def print_config(cfg: DictConfig) -> None:
    """Show the resolved config as a tree, once per run."""
    if not is_global_zero():
        return
    import rich.syntax
    import rich.tree

    from .console import console_for

    tree = rich.tree.Tree("config", guide_style="dim")
    for key, value in cfg.items():
        text = redact(OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else repr(value))
        tree.add(f"[bold]{key}").add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    console_for(tree).print(tree)


def _scalars(metrics: dict) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if getattr(value, "numel", lambda: 1)() == 1}


def process_started(pid: int) -> float | None:
    """When process ``pid`` of this host started (seconds since the epoch), None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def observed_status(record: dict[str, Any]) -> str | None:
    """The status in a summary.json, but ``killed`` where it says running and its process is gone.

    Only a process of this host can be looked up; a run recorded on another host keeps its status.
    """
    status = record.get("status")
    if status != "running" or record.get("host") != socket.gethostname() or "pid" not in record:
        return status
    started = process_started(record["pid"])
    # The same pid with another start time is a new process that reused the number.
    alive = started is not None and abs(started - record.get("process_started", started)) < 1.0
    return status if alive else "killed"


def describe(error: BaseException, where: Path) -> str:
    """One line for summary.json; a full disk said plainly, wherever it is in the chain of exceptions."""
    text = f"{type(error).__name__}: {error}"
    seen, current = set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return (
                f"No space left on device: the disk holding {where} is full. Free space there, or write runs "
                f"elsewhere with LOG_DIR=<folder on another disk> (or paths.log_dir=...). ({text})"
            )
        current = current.__cause__ or current.__context__
    return text


def ctrl_c(error: BaseException) -> bool:
    """Ctrl-C (SIGINT): a KeyboardInterrupt, or the SystemExit(1) Lightning turns it into after its clean-up."""
    if isinstance(error, SystemExit):
        error = error.__context__
    return isinstance(error, KeyboardInterrupt)


class RunRecord:
    """Keeps summary.json up to date from the start of a run to its end."""

    def __init__(self, cfg: DictConfig, output_dir: Path, started: float):
        self.path = output_dir / "summary.json"
        self.output_dir = output_dir
        self.monitor = dict(cfg.monitor)
        self.started = started
        self.write_error: str | None = None
        self.data: dict[str, Any] = {
            "status": "running",
            "run_dir": str(output_dir),
            "monitor": {**self.monitor, "best": None},
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            # Who writes this record: readers tell a live run from a killed one by it (observed_status).
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_started": process_started(os.getpid()),
        }
        if is_global_zero():
            output_dir.mkdir(parents=True, exist_ok=True)
            resolved = redact(OmegaConf.to_container(cfg, resolve=True))
            (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved), encoding="utf-8")
            project_root = Path(os.environ.get("PROJECT_ROOT", "."))
            max_patch_mb = cfg.get("max_code_patch_mb", MAX_PATCH_MB)
            write_json(output_dir / "provenance.json", provenance(project_root, output_dir, max_patch_mb))
            self._write()

    def record(self, **values: Any) -> None:
        self.data.update(values)
        self._write()

    def _write(self) -> None:
        if not is_global_zero():
            return
        self.data["wall_time_s"] = round(time.time() - self.started, 3)
        try:
            write_json(self.path, self.data)
        except OSError as error:
            # The record is bookkeeping: a run folder that became read-only (or a full disk) must not end
            # the training; the checkpoints say whether it can go on.
            if self.write_error is None:
                log.error("Cannot write %s (%s); the run goes on without its record.", self.path, error)
            self.write_error = describe(error, self.path.parent)
        else:
            if self.write_error is not None:
                log.info("%s is written again.", self.path)
            self.write_error = None

    def record_validation(self, trainer) -> None:
        """After a validation of the fit: progress, metrics, and the best value of the monitored metric so far."""
        from .callbacks.throughput import throughput_summary

        metrics = _scalars(trainer.callback_metrics)
        self.data.update(
            global_step=trainer.global_step,
            epoch=trainer.current_epoch,
            metrics={**self.data.get("metrics", {}), **metrics},
            throughput=throughput_summary(trainer),
        )
        current, best = metrics.get(self.monitor["metric"]), self.data["monitor"]["best"]
        if current is not None and not math.isnan(current):
            better = min if self.monitor["mode"] == "min" else max
            self.data["monitor"]["best"] = current if best is None else better(best, current)
        self._write()

    def record_trainer(self, trainer) -> None:
        """Copy progress, metrics and checkpoints from the trainer (after fit, after test)."""
        from pytorch_lightning.trainer.states import TrainerFn

        from .callbacks.throughput import throughput_summary

        self.data["metrics"] = {**self.data.get("metrics", {}), **_scalars(trainer.callback_metrics)}
        if trainer.state.fn == TrainerFn.FITTING:
            # Not after testing: trainer.test(ckpt_path=best) puts back the callbacks' states of that checkpoint.
            checkpoint = trainer.checkpoint_callback
            self.data.update(
                global_step=trainer.global_step,
                epoch=trainer.current_epoch,
                best_checkpoint=getattr(checkpoint, "best_model_path", None) or None,
                last_checkpoint=getattr(checkpoint, "last_model_path", None) or None,
                throughput=throughput_summary(trainer),
            )
            best = getattr(checkpoint, "best_model_score", None)
            if best is not None:
                self.data["monitor"]["best"] = float(best)
            self._record_early_stop(trainer)
        self._write()

    def _record_early_stop(self, trainer) -> None:
        for callback in trainer.early_stopping_callbacks:
            if reason := callback.stopping_reason_message:
                self.data["stopped_early"] = {"epoch": callback.stopped_epoch, "reason": reason}
                log.info("Stopped early after epoch %d: %s", callback.stopped_epoch, reason)

    def finish(self, trainer) -> float | None:
        """Mark the run completed; return the monitored metric for sweepers."""
        self.record_trainer(trainer)
        self.data["status"] = "completed"
        self._write()
        if self.write_error is not None:
            log.error("The run completed, but %s could not be written: %s", self.path, self.write_error)
        best = self.data["monitor"]["best"]
        return None if best is None or math.isnan(best) else best

    def stop(self, status: str, reason: str, trainer) -> None:
        """Mark the run requeued or interrupted by a signal, with progress up to its last checkpoint."""
        self.record_trainer(trainer)
        self.data.update(status=status, stopped_by=reason)
        self._write()

    def fail(self, error: BaseException, trainer=None) -> None:
        if trainer is not None:
            self.record_trainer(trainer)
        self.data["status"] = "interrupted" if ctrl_c(error) else "failed"
        self.data["error"] = describe(error, self.output_dir)
        self._write()
