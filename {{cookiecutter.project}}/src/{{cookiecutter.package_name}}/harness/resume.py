"""Which checkpoint a run starts from: ``ckpt_path=last`` takes the newest checkpoint of the same experiment.

The same experiment: a run folder under ``<log_dir>/<task_name>/`` (a single run, or a job of a sweep,
as a run submitted to SLURM with ``-m`` is) whose resolved ``model`` and ``data`` configs equal this
run's, settings that do not change the training aside (where the data lives, loader workers). A run
of another model or other data is never taken, however new. In the chosen run the newest checkpoint
wins, whatever its kind: ``last.ckpt``, a top-k file that a kill left without its ``last.ckpt``, or a
SLURM requeue checkpoint. The run resumed from is named in the log and in ``summary.json``
(``resumed_from``); if it was killed, its own summary.json says so from then on, and the temporaries
of its killed checkpoint writes are removed.
"""

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .distributed import is_global_zero
from .runs import observed_status, write_json
from .secret_env import redact

log = logging.getLogger(__name__)

EXPERIMENT = ("model", "data")
# Settings that may change between a run and its resumption without changing what is trained.
RUNTIME_KEYS = {"data.data_dir", "data.num_workers", "data.pin_memory", "data.prepare_data_per_node", "model.compile"}


class ResumeError(FileNotFoundError):
    """``ckpt_path=last`` finds nothing to resume; the message says what there is and what to do."""


def resolve_ckpt_path(cfg: DictConfig, record) -> str | None:
    """The checkpoint ``cfg.ckpt_path`` names, after noting in ``record`` (a runs.RunRecord) where it comes from."""
    if cfg.ckpt_path is None:
        return None
    if cfg.ckpt_path == "last":
        run_dir, checkpoint = find_last(cfg, record.output_dir)
    else:
        checkpoint = Path(cfg.ckpt_path)
        run_dir = run_folder_of(checkpoint)
    status = settle(run_dir, checkpoint) if run_dir is not None else None
    record.record(resumed_from={"run_dir": run_dir and str(run_dir), "checkpoint": str(checkpoint), "status": status})
    if cfg.ckpt_path == "last":
        log.info("ckpt_path=last: resuming run %s (%s) from %s", run_dir, status, checkpoint)
    return str(checkpoint)


def find_last(cfg: DictConfig, this_run: Path | None = None) -> tuple[Path, Path]:
    """``(run folder, checkpoint)``: the newest checkpoint of a run of this experiment."""
    root = Path(cfg.paths.log_dir) / cfg.task_name
    # Only these sections are resolved: before a run starts (checks.py) Hydra's runtime values are not set.
    wanted = experiment({key: OmegaConf.to_container(cfg[key], resolve=True) for key in EXPERIMENT if key in cfg})
    found = []
    for run_dir in (summary.parent for summary in root.rglob("summary.json")):
        if run_dir == this_run or not (run_dir / "config_resolved.yaml").is_file():
            continue
        if (checkpoint := newest_checkpoint(run_dir)) is not None:
            found.append((checkpoint.stat().st_mtime_ns, run_dir, checkpoint))
    if not found:
        raise ResumeError(
            f"ckpt_path=last: no checkpoint under {root}. Train once without ckpt_path first, "
            "or give the path of a checkpoint: ckpt_path=/path/to/file.ckpt"
        )
    # Newest first: only the configs up to the first run of this experiment are read.
    found.sort(key=lambda entry: entry[0], reverse=True)
    for _, run_dir, checkpoint in found:
        if experiment(OmegaConf.to_container(OmegaConf.load(run_dir / "config_resolved.yaml"))) == wanted:
            return run_dir, checkpoint
    _, run_dir, checkpoint = found[0]
    theirs = experiment(OmegaConf.to_container(OmegaConf.load(run_dir / "config_resolved.yaml")))
    raise ResumeError(
        f"ckpt_path=last: no run under {root} has this run's model and data config. The newest checkpoint there, "
        f"{checkpoint}, is from a run whose config differs in {differences(wanted, theirs)}. Resume that run with "
        f"its config (see {run_dir / 'config_resolved.yaml'}) and ckpt_path={checkpoint}, or start afresh without "
        "ckpt_path."
    )


def experiment(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened model and data settings that a resumed run must share, secrets redacted as on disk."""
    flat = dict(_flatten({key: config.get(key) for key in EXPERIMENT}))
    return redact({key: value for key, value in flat.items() if key not in RUNTIME_KEYS})


def differences(ours: dict[str, Any], theirs: dict[str, Any], shown: int = 3) -> str:
    keys = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    listed = ", ".join(f"{key} ({ours.get(key)!r} here, {theirs.get(key)!r} there)" for key in keys[:shown])
    return listed + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _flatten(tree: Any, prefix: str = ""):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), tree


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The run's most recently written checkpoint (temporaries of unfinished writes are hidden and end in .tmp)."""
    found = [path for path in run_dir.rglob("*.ckpt") if path.is_file() and not path.name.startswith(".")]
    # Equal times: last.ckpt, written after the top-k file of the same step.
    return max(found, key=lambda path: (path.stat().st_mtime_ns, path.name == "last.ckpt"), default=None)


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder that holds ``checkpoint`` (e.g. ``<run>/checkpoints/last.ckpt``), if it is in one."""
    for folder in checkpoint.resolve().parents:
        if (folder / "summary.json").is_file():
            return folder
    return None


def settle(run_dir: Path, checkpoint: Path) -> str | None:
    """The status of the run resumed from; a killed one is marked so, and its unfinished writes removed."""
    from .checkpointing import remove_stale_temporaries  # imports torch: not needed by the checks before a run

    summary = run_dir / "summary.json"
    record = json.loads(summary.read_text(encoding="utf-8"))
    status = observed_status(record)
    if is_global_zero() and status != "running":
        if record.get("status") != status:
            try:
                write_json(summary, {**record, "status": status})
            except OSError as error:
                log.warning("Could not mark %s as %s: %s", run_dir, status, error)
        for folder in {checkpoint.parent, run_dir}:
            if stale := remove_stale_temporaries(folder):
                log.info("Removed %d unfinished checkpoint write(s) of %s: %s", len(stale), run_dir, stale)
    return status
