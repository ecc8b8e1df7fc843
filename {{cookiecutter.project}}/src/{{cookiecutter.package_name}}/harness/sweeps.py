"""After every multirun: one table of its jobs, as sweep_results.csv, sweep_results.png and on the console.

Each job's summary.json and Hydra's record of its overrides are read back from the sweep
folder, so the same code serves every launcher (local, SLURM) and sweeper (grid, Optuna).
A job whose process died without a word (``kill -9``, e.g. the trial an interrupted Optuna search
was running) shows as ``killed``, not ``running``. A local sweep stopped by SIGTERM or Ctrl-C ends
after the table of its jobs so far, its last ``interrupted``. A sweep with failed jobs exits non-zero, saying how many;
on SLURM each failed job also ends FAILED.
"""

import csv
import json
import logging
import math
import os
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
    report it. A single run, and Ctrl-C anywhere, still raise; so does a job that submitit runs
    (``cluster=slurm``): it is a process of its own, whose failure SLURM must see (its launcher
    ends it non-zero after handing the sweep its result, see hydra_plugins/*_slurm).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not isinstance(error, Exception) or not HydraConfig.initialized():
        return False
    if HydraConfig.get().mode != RunMode.MULTIRUN or "SUBMITIT_FOLDER" in os.environ:
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


def _ordered(values: list[str]) -> list[str]:
    """Distinct values, numerically when they are numbers."""
    distinct = sorted(set(values))
    numbers = _as_numbers(distinct)
    return distinct if numbers is None else [v for _, v in sorted(zip(numbers, distinct, strict=True))]


def _wide_range(numbers: list[float]) -> bool:
    return bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 10


def figure(rows: list[dict[str, Any]], keys: list[str], metric: str):
    """One swept parameter: the metric against it; two: a heatmap of every combination; more: parallel coordinates."""
    # The object API draws with Agg without touching pyplot's global backend.
    from matplotlib.figure import Figure

    done = [row for row in rows if row["status"] == "completed" and row[metric] is not None]
    values = [[_params(row).get(key, "") for key in keys] for row in done]
    if len(keys) == 2:
        fig = Figure(figsize=(6.5, 5), layout="constrained")
        _heatmap(fig.subplots(), values, [row[metric] for row in done], keys, metric)
    elif len(keys) > 2:
        fig = Figure(figsize=(2 + 1.6 * len(keys), 4.5), layout="constrained")
        _parallel_coordinates(fig, fig.subplots(), values, [row[metric] for row in done], keys, metric)
    else:
        fig = Figure(figsize=(5, 3.8), layout="constrained")
        labels = [v[0] for v in values] if keys else [row["job"] for row in done]
        _scatter(fig.subplots(), labels, [row[metric] for row in done], keys[0] if keys else "job", metric)
    fig.suptitle(f"{len(done)} of {len(rows)} jobs completed")
    return fig


def _scatter(ax, labels: list[str], metrics: list[float], key: str, metric: str) -> None:
    numbers = _as_numbers(labels)
    if numbers is None:
        categories = _ordered(labels)
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        numbers = [categories.index(label) for label in labels]
        ax.margins(x=0.2)
    elif _wide_range(numbers):
        ax.set_xscale("log")
    ax.scatter(numbers, metrics)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)


def _heatmap(ax, values: list[list[str]], metrics: list[float], keys: list[str], metric: str) -> None:
    """Rows are the first parameter's values, columns the second's; a cell holds its jobs' mean, blank if none."""
    import numpy as np

    rows, columns = _ordered([v[0] for v in values]), _ordered([v[1] for v in values])
    sums, counts = np.zeros((len(rows), len(columns))), np.zeros((len(rows), len(columns)))
    for (row, column), value in zip(values, metrics, strict=True):
        sums[rows.index(row), columns.index(column)] += value
        counts[rows.index(row), columns.index(column)] += 1
    grid = np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.4g}", ha="center", va="center", color="white", fontsize=9)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_ylabel(keys[0])
    ax.set_xlabel(keys[1])
    ax.figure.colorbar(image, ax=ax, label=metric)


def _axis_positions(labels: list[str], log: bool = True) -> tuple[list[float], list[tuple[float, str]]]:
    """Each label's height in [0, 1] on its axis (log-scaled over a wide positive range), and its ticks."""
    import math

    numbers = _as_numbers(labels)
    if numbers is None:
        categories = _ordered(labels)
        step = 1 / max(len(categories) - 1, 1)
        return [categories.index(v) * step for v in labels], [(i * step, c) for i, c in enumerate(categories)]
    scale = math.log10 if log and _wide_range(numbers) else float
    low, high = min(map(scale, numbers)), max(map(scale, numbers))
    span = high - low or 1.0
    heights = [(scale(x) - low) / span for x in numbers]
    if len(set(labels)) > 8:
        # Sampled values (a search) would overlap: label the ends of the axis.
        ends = (numbers.index(min(numbers)), numbers.index(max(numbers)))
        return heights, [(heights[i], _short(labels[i])) for i in ends]
    return heights, sorted({height: _short(label) for height, label in zip(heights, labels, strict=True)}.items())


def _parallel_coordinates(fig, ax, values: list[list[str]], metrics: list[float], keys: list[str], metric: str) -> None:
    """One vertical axis per parameter and one for the metric; one line per job, coloured by its metric."""
    import matplotlib as mpl

    placed = [_axis_positions([v[i] for v in values]) for i in range(len(keys))]
    # The metric axis stays linear, as its colour scale is.
    placed.append(_axis_positions([repr(m) for m in metrics], log=False))
    norm = mpl.colors.Normalize(min(metrics, default=0), max(metrics, default=1))
    cmap = mpl.colormaps["viridis"]
    for job, value in enumerate(metrics):
        ax.plot(range(len(placed)), [heights[job] for heights, _ in placed], color=cmap(norm(value)), alpha=0.8)
    for x, (_, ticks) in enumerate(placed):
        ax.axvline(x, color="black", linewidth=0.8)
        for height, label in ticks:
            ax.text(x + 0.03, height, label, fontsize=8, va="center")
    ax.set_xticks(range(len(placed)), [*keys, metric], rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)


def plot(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> None:
    fig = figure(rows, keys, metric)
    fig.suptitle(f"{path.parent.name}: {fig.get_suptitle()}")
    fig.savefig(path, dpi=100)


def _short(value: str) -> str:
    """Sampled floats to four significant digits, so that the table fits a terminal."""
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value else value
    except ValueError:
        return value


def show(rows: list[dict[str, Any]], keys: list[str], metric: str, mode: str, sweep_dir: Path) -> None:
    from rich.table import Table

    from .console import console_for

    table = Table(title=f"{sweep_dir.name}: jobs ranked by {metric} ({mode})")
    for column in ("rank", "job", "status", metric, *keys):
        table.add_column(column, justify="right" if column in ("rank", metric) else "left")
    for rank, row in enumerate(rows, start=1):
        value = "" if row[metric] is None else f"{row[metric]:.4g}"
        status = row["status"] if row["status"] == "completed" else f"[red]{row['status']}"
        params = _params(row)
        table.add_row(str(rank), row["job"], status, value, *(_short(params.get(key, "")) for key in keys))
    console = console_for(table)
    console.print(table)
    best = rows[0] if rows and rows[0]["status"] == "completed" and rows[0][metric] is not None else None
    if best is not None:
        swept = " ".join(f"{key}={_params(best).get(key, '')}" for key in keys)
        console.print(f"best: {metric}={best[metric]:.6g} with [bold]{swept}[/] in {best['run_dir']}", soft_wrap=True)
    for row in rows:
        if row["status"] == "failed":
            console.print(f"[red]job {row['job']} failed:[/] {row['error']}", soft_wrap=True)
    console.print(f"results: {sweep_dir / CSV_NAME}, {sweep_dir / PLOT_NAME}", soft_wrap=True)


def summarise(sweep_dir: Path, metric: str, mode: str) -> list[dict[str, Any]]:
    """The table of the jobs in ``sweep_dir`` so far: CSV, plot and console; returns its rows."""
    rows = ranked(collect(sweep_dir, metric), metric, mode)
    keys = swept_keys(rows)
    write_csv(rows, keys, metric, sweep_dir / CSV_NAME)
    plot(rows, keys, metric, sweep_dir / PLOT_NAME)
    show(rows, keys, metric, mode, sweep_dir)
    return rows


def summarise_stopped_sweep(cfg: DictConfig) -> None:
    """A signal (SIGTERM, Ctrl-C) stops a local multirun in one of its jobs: the table of the jobs so far.

    The stop leaves Hydra's sweep by an exception that skips ``on_multirun_end``. A job that submitit runs
    is a process of its own: its sweep goes on in the submitting process, which writes the table.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN or "SUBMITIT_FOLDER" in os.environ:
        return
    log.warning("The sweep stops here; its table holds the jobs so far.")
    summarise(Path(HydraConfig.get().sweep.dir), cfg.monitor.metric, cfg.monitor.mode)


class SweepResults(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/hydra/default.yaml) that sums up each multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarise(sweep_dir, config.monitor.metric, config.monitor.mode)
        failed = sum(row["status"] == "failed" for row in rows)
        if failed:
            # Hydra turns exceptions raised in callbacks into warnings; SystemExit still sets the exit status.
            raise SystemExit(f"{failed} of {len(rows)} jobs failed: see {sweep_dir / CSV_NAME}")
