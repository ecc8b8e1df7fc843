"""The baked project among the tools around it: batch-job logs, sweep plots, --help."""

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from conftest import run

pytestmark = pytest.mark.slow

# A few seconds of training on digits: 21 batches per epoch.
SHORT = ("trainer.max_epochs=3", "trainer.accelerator=cpu", "callbacks.system_monitor=null")
PROGRESS_LINE = re.compile(
    r"^epoch (?P<epoch>\d+)/2 (?P<where>done|(?P<done>\d+)/(?P<total>\d+) batches \(\d+%\))  "
    r"step (?P<step>\d+)/(?P<steps>\d+)  (?:.*  )?[\d,]+ samples/s  eta \d+:\d\d:\d\d$"
)


def train_env(log_dir: Path) -> dict[str, str]:
    return {**os.environ, "LOG_DIR": str(log_dir), "WANDB_MODE": "offline"}


def train_to_file(project: Path, log_dir: Path, *overrides: str) -> str:
    """Run train.py as a batch job does: stdout and stderr into a file; return what it wrote."""
    out = log_dir / "job.out"
    log_dir.mkdir(parents=True, exist_ok=True)
    with out.open("w") as file:
        done = subprocess.run(
            [sys.executable, "train.py", *overrides],
            cwd=project,
            env=train_env(log_dir),
            stdout=file,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    text = out.read_text(encoding="utf-8")
    assert done.returncode == 0, text[-5000:]
    return text


def test_batch_job_log_has_one_plain_line_per_interval(installed_project, tmp_path):
    # A deep log folder makes config lines longer than 80 columns.
    log_dir = tmp_path / ("a_log_folder_with_a_long_name_" * 3)
    every_half = ("callbacks.progress_bar.every_percent=50", "callbacks.progress_bar.min_interval_s=0")
    text = train_to_file(installed_project, log_dir, *SHORT, *every_half)

    assert "\r" not in text and "\x1b[" not in text, "carriage returns or cursor codes in a log file"
    lines = text.splitlines()
    progress = [m for m in map(PROGRESS_LINE.match, lines) if m]
    # Each epoch: one line at half of it, one at its end.
    assert [(int(m["epoch"]), m["where"] == "done") for m in progress] == [
        (epoch, end) for epoch in range(3) for end in (False, True)
    ], "\n".join(m.string for m in progress)
    halves = [m for m in progress if m["where"] != "done"]
    assert all(int(m["done"]) * 2 >= int(m["total"]) > int(m["done"]) for m in halves)
    ends = [int(m["step"]) for m in progress if m["where"] == "done"]
    assert ends == [ends[0], 2 * ends[0], 3 * ends[0]] and int(progress[-1]["steps"]) == ends[-1]
    assert "val/loss=" in progress[1].string and "val/acc=" in progress[1].string
    # Lightning's closing message starts its own line.
    (stopped,) = [line for line in lines if "`Trainer.fit` stopped" in line]
    assert re.match(r"\[\d{4}-\d\d-\d\d [\d:,]+\]\[[\w.]+\]\[INFO\] - `Trainer.fit` stopped", stopped), stopped

    # The config tree is printed whole: the longest path in it is not cut at 80 columns.
    (run_dir,) = (log_dir / "train" / "runs").iterdir()
    assert f"dirpath: {run_dir}/checkpoints" in text
    assert "…" not in text


def test_terminal_keeps_the_live_bar(installed_project, tmp_path):
    leader, follower = pty.openpty()
    # A terminal of 40 rows and 120 columns: a fresh pty has none, and tqdm would draw nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "train.py", *SHORT, "trainer.max_epochs=1", "test=false"],
        cwd=installed_project,
        env=train_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=900) == 0, output[-3000:].decode(errors="replace")
    text = output.decode(errors="replace")
    assert "\r" in text.replace("\r\n", "\n"), "no live bar in a terminal"
    assert re.search(r"Epoch 0: +100%", text), text[-3000:]
    assert not any(PROGRESS_LINE.match(line) for line in text.splitlines())


def test_sweep_table_is_whole_in_a_log_file(installed_project, tmp_path):
    sweep = ("-m", "model.optimizer.lr=1e-2,1e-3", "model.optimizer.weight_decay=0,1e-4")
    tiny = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false")
    text = train_to_file(installed_project, tmp_path, *sweep, *tiny, "trainer.accelerator=cpu")
    (header,) = [line for line in text.splitlines() if "model.optimizer.weight_decay" in line and "rank" in line]
    assert re.search(
        r"rank .* job .* status .* val/loss .* model\.optimizer\.lr .* model\.optimizer\.weight_dec", header
    )
    assert len(header) > 80 and "…" not in text


def test_sweep_plot_shows_every_combination(installed_project):
    probe = Path(__file__).with_name("sweep_figure_probe.py")
    drawn = json.loads(
        run(sys.executable, str(probe), installed_project.name.replace("-", "_"), cwd=installed_project).stdout
    )

    # Two swept parameters: a heatmap, one cell per combination, blank where the job failed.
    heatmap = drawn["heatmap"]
    assert (heatmap["ylabel"], heatmap["xlabel"]) == ("lr", "bs")
    assert heatmap["rows"] == ["0.001", "0.01"] and heatmap["columns"] == ["64", "128"]
    assert heatmap["cells"] == [[0.4, None], [0.5, 0.3]]

    # More: parallel coordinates, an axis per parameter and one for the metric, a line per completed job.
    parallel = drawn["parallel"]
    assert parallel["axes"] == ["lr", "dropout", "act", "val/loss"]
    assert len(parallel["jobs"]) == 5
    metric_heights = [job[-1] for job in parallel["jobs"]]
    assert metric_heights == sorted(metric_heights) and metric_heights[0] == 0 and metric_heights[-1] == 1
    # lr falls as the metric rises (log scale: evenly spaced); dropout rises with it.
    assert [round(job[0], 6) for job in parallel["jobs"]] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [round(job[1], 6) for job in parallel["jobs"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {job[2] for job in parallel["jobs"]} == {0.0, 1.0}
