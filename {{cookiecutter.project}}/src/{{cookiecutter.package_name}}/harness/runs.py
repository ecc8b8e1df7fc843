"""What a run leaves in its directory: resolved config, provenance and summary.json.

Only global rank 0 writes, so a multi-process run leaves one set of files.
"""

import datetime as dt
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .callbacks.throughput import throughput_summary
from .distributed import is_global_zero
from .provenance import MAX_PATCH_MB, provenance
from .secret_env import redact


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


def resolve_ckpt_path(ckpt_path: str | None, log_dir: str) -> str | None:
    """Turn ``ckpt_path`` into a file Lightning can resume from, or fail saying what to do."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        candidates = sorted(Path(log_dir).rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise FileNotFoundError(
                f"ckpt_path=last: no last.ckpt under {log_dir}. Train once without ckpt_path first, "
                "or give the path of a checkpoint: ckpt_path=/path/to/file.ckpt"
            )
        return str(candidates[-1])
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such file. Use ckpt_path=last or an existing .ckpt file.")
    return ckpt_path


def _scalars(metrics: dict) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if getattr(value, "numel", lambda: 1)() == 1}


class RunRecord:
    """Keeps summary.json up to date from the start of a run to its end."""

    def __init__(self, cfg: DictConfig, output_dir: Path, started: float):
        self.path = output_dir / "summary.json"
        self.output_dir = output_dir
        self.monitor = dict(cfg.monitor)
        self.started = started
        self.data: dict[str, Any] = {
            "status": "running",
            "run_dir": str(output_dir),
            "monitor": {**self.monitor, "best": None},
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
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
        if is_global_zero():
            self.data["wall_time_s"] = round(time.time() - self.started, 3)
            write_json(self.path, self.data)

    def record_trainer(self, trainer) -> None:
        """Copy progress, metrics and checkpoints from the trainer (after fit, after test)."""
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_score", None)
        self.data.update(
            global_step=trainer.global_step,
            epoch=trainer.current_epoch,
            metrics={**self.data.get("metrics", {}), **_scalars(trainer.callback_metrics)},
            best_checkpoint=getattr(checkpoint, "best_model_path", None) or None,
            last_checkpoint=getattr(checkpoint, "last_model_path", None) or None,
            throughput=throughput_summary(trainer),
        )
        if best is None:
            best = self.data["metrics"].get(self.monitor["metric"])
        self.data["monitor"]["best"] = None if best is None else float(best)
        self._write()

    def finish(self, trainer) -> float | None:
        """Mark the run completed; return the monitored metric for sweepers."""
        self.record_trainer(trainer)
        self.data["status"] = "completed"
        self._write()
        best = self.data["monitor"]["best"]
        return None if best is None or math.isnan(best) else best

    def fail(self, error: BaseException, trainer=None) -> None:
        if trainer is not None:
            self.record_trainer(trainer)
        self.data["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self.data["error"] = f"{type(error).__name__}: {error}"
        self._write()
