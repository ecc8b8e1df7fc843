"""Draws sweep figures with a baked package's harness/sweeps.py and prints what they show, as JSON.

Run by test_ecosystem.py in a fresh interpreter, where the baked package is importable:
``python sweep_figure_probe.py <package>``.
"""

import importlib
import json
import math
import sys

figure = importlib.import_module(f"{sys.argv[1]}.harness.sweeps").figure


def row(job, metric, status="completed", **params):
    overrides = [f"{key}={value}" for key, value in params.items()]
    return {"job": str(job), "status": status, "val/loss": metric, "overrides": overrides, "run_dir": "", "error": None}


def labels(ticks):
    return [tick.get_text() for tick in ticks]


grid = [
    row(0, 0.5, lr="0.01", bs="64"),
    row(1, 0.4, lr="0.001", bs="64"),
    row(2, 0.3, lr="0.01", bs="128"),
    row(3, None, "failed", lr="0.001", bs="128"),
]
ax, _colorbar = figure(grid, ["lr", "bs"], "val/loss").axes
image = ax.images[0].get_array().filled(math.nan)
heatmap = {
    "cells": [[None if math.isnan(v) else round(float(v), 6) for v in line] for line in image],
    "rows": labels(ax.get_yticklabels()),
    "columns": labels(ax.get_xticklabels()),
    "ylabel": ax.get_ylabel(),
    "xlabel": ax.get_xlabel(),
}

search = [row(i, 0.1 * i, lr=str(10.0**-i), dropout=str(0.1 * i), act=("relu", "gelu")[i % 2]) for i in range(1, 6)]
failed = row(9, None, "failed", lr="1", dropout="0", act="relu")
ax, _colorbar = figure([*search, failed], ["lr", "dropout", "act"], "val/loss").axes
parallel = {
    "axes": labels(ax.get_xticklabels()),
    "jobs": [line.get_ydata().tolist() for line in ax.lines if len(line.get_xdata()) == 4],
}
json.dump({"heatmap": heatmap, "parallel": parallel}, sys.stdout)
