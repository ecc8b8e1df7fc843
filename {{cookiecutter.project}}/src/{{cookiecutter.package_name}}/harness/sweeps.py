"""After every multirun: one table of its jobs, as sweep_results.csv, sweep_results.png and on the console.

Each job's summary.json and Hydra's record of its overrides are read back from the sweep
folder, so the same code serves every launcher (local, SLURM) and sweeper (grid, Optuna).
A job whose process died without a word (``kill -9``, e.g. the trial an interrupted Optuna search
was running) shows as ``killed``, not ``running``. A sweep with failed jobs exits non-zero, saying how many.
"""

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .runs import observed_status

log = logging.getLogger(__name__)

CSV_NAME = "sweep_results.csv"
PLOT_NAME = "sweep_results.png"


def continue_sweep(error: BaseException) -> bool:
    """True when this run is one job of a multirun, so that ``error`` must not stop the other jobs.

    The failure is already in the job's summary.json; the sweep's results and exit status
    report it. A single run, and Ctrl-C anywhere, still raise.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not isinstance(error, Exception) or not HydraConfig.initialized():
        return False
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    log.error("This job failed; the sweep goes on with the others.", exc_info=error)
    return True


def _job_number(run_dir: Path) -> tuple[float, str]:
    return (int(run_dir.name), "") if run_dir.name.isdigit() else (math.inf, run_dir.name)


def collect(sweep_dir: Path, metric: str) -> list[dict[str, Any]]:
    """One row per job folder that holds a summary.json, in job order."""
    rows = []
    for path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: _job_number(p.parent)):
        summary = json.loads(path.read_text(encoding="utf-8"))
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
        rows.append(
            {
                "job": path.parent.name,
                "status": observed_status(summary),
                metric: summary.get("monitor", {}).get("best"),
                "overrides": overrides,
                "run_dir": summary.get("run_dir", str(path.parent)),
                "error": summary.get("error"),
            }
        )
    return rows


def swept_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The overridden keys whose value differs between jobs: what the sweep varied."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for override in row["overrides"]:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 or any(key not in _params(r) for r in rows)]


def _params(row: dict[str, Any]) -> dict[str, str]:
    return dict(override.partition("=")[::2] for override in row["overrides"])


def ranked(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Best first by the monitored metric; jobs without a value (failed, still running) last."""

    def key(row):
        value = row[metric]
        if row["status"] != "completed" or value is None or math.isnan(value):
            return (1, 0.0)
        return (0, value if mode == "min" else -value)

    return sorted(rows, key=key)


def write_csv(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["job", "status", metric, *keys, "overrides", "run_dir", "error"])
        for row in rows:
            params = _params(row)
            writer.writerow(
                [
                    row["job"],
                    row["status"],
                    row[metric],
                    *(params.get(key, "") for key in keys),
                    " ".join(row["overrides"]),
                    row["run_dir"],
                    row["error"] or "",
                ]
            )


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(value) for value in values]
    except ValueError:
        return None


def plot(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> None:
    """The metric against each swept parameter (against the job number when nothing varied)."""
    # The object API draws with Agg without touching pyplot's global backend.
    from matplotlib.figure import Figure

    done = [row for row in rows if row["status"] == "completed" and row[metric] is not None]
    axes_keys = keys or ["job"]
    figure = Figure(figsize=(4.5 * len(axes_keys), 3.8), layout="constrained")
    for ax, key in zip(figure.subplots(1, len(axes_keys), squeeze=False)[0], axes_keys, strict=True):
        labels = [row["job"] if key == "job" else _params(row).get(key, "") for row in done]
        numbers = _as_numbers(labels)
        if numbers is None:
            categories = sorted(set(labels))
            ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
            numbers = [categories.index(label) for label in labels]
            ax.margins(x=0.2)
        elif numbers and min(numbers) > 0 and max(numbers) / min(numbers) >= 10:
            ax.set_xscale("log")
        ax.scatter(numbers, [row[metric] for row in done])
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    figure.suptitle(f"{path.parent.name}: {len(done)} of {len(rows)} jobs completed")
    figure.savefig(path, dpi=100)


def _short(value: str) -> str:
    """Sampled floats to four significant digits, so that the table fits a terminal."""
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value else value
    except ValueError:
        return value


def show(rows: list[dict[str, Any]], keys: list[str], metric: str, mode: str, sweep_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{sweep_dir.name}: jobs ranked by {metric} ({mode})")
    for column in ("rank", "job", "status", metric, *keys):
        table.add_column(column, justify="right" if column in ("rank", metric) else "left")
    for rank, row in enumerate(rows, start=1):
        value = "" if row[metric] is None else f"{row[metric]:.4g}"
        status = row["status"] if row["status"] == "completed" else f"[red]{row['status']}"
        params = _params(row)
        table.add_row(str(rank), row["job"], status, value, *(_short(params.get(key, "")) for key in keys))
    console = Console()
    console.print(table)
    best = rows[0] if rows and rows[0]["status"] == "completed" and rows[0][metric] is not None else None
    if best is not None:
        swept = " ".join(f"{key}={_params(best).get(key, '')}" for key in keys)
        console.print(f"best: {metric}={best[metric]:.6g} with [bold]{swept}[/] in {best['run_dir']}", soft_wrap=True)
    for row in rows:
        if row["status"] == "failed":
            console.print(f"[red]job {row['job']} failed:[/] {row['error']}", soft_wrap=True)
    console.print(f"results: {sweep_dir / CSV_NAME}, {sweep_dir / PLOT_NAME}", soft_wrap=True)


class SweepResults(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/hydra/default.yaml) that sums up each multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        metric, mode = config.monitor.metric, config.monitor.mode
        rows = ranked(collect(sweep_dir, metric), metric, mode)
        keys = swept_keys(rows)
        write_csv(rows, keys, metric, sweep_dir / CSV_NAME)
        plot(rows, keys, metric, sweep_dir / PLOT_NAME)
        show(rows, keys, metric, mode, sweep_dir)
        failed = sum(row["status"] == "failed" for row in rows)
        if failed:
            # Hydra turns exceptions raised in callbacks into warnings; SystemExit still sets the exit status.
            raise SystemExit(f"{failed} of {len(rows)} jobs failed: see {sweep_dir / CSV_NAME}")
