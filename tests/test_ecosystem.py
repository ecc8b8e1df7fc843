"""The baked project among the tools around it: batch-job logs, sweep plots, pre-commit, uv and pip, the CI
workflow, cruft updates, MLflow, --help and tab completion."""

import fcntl
import json
import os
import pty
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import tomllib
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import TEMPLATE, bake, run

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


def test_batch_job_log_goes_on_after_a_resume_in_the_middle_of_an_epoch(installed_project, tmp_path):
    # A requeued SLURM job continues from a checkpoint taken inside an epoch: Lightning then skips that
    # epoch's on_train_epoch_start.
    lines = ("callbacks.progress_bar.every_percent=50", "callbacks.progress_bar.min_interval_s=0")
    stop_inside = ("trainer.max_steps=30", "callbacks.model_checkpoint.every_n_train_steps=10", "test=false")
    train_to_file(installed_project, tmp_path / "first", *SHORT, *lines, *stop_inside)
    (checkpoint,) = (tmp_path / "first" / "train" / "runs").glob("*/checkpoints/last.ckpt")
    text = train_to_file(
        installed_project, tmp_path / "resumed", *SHORT, *lines, f"ckpt_path={checkpoint}", "test=false"
    )
    progress = [m for m in map(PROGRESS_LINE.match, text.splitlines()) if m]
    # Step 30 is batch 9 of epoch 1's 21: the rest of epoch 1 (its half, its end), then epoch 2.
    assert [(int(m["epoch"]), m["where"] == "done") for m in progress] == [
        (epoch, end) for epoch in (1, 2) for end in (False, True)
    ], text
    assert int(progress[0]["step"]) == 32 and progress[0]["done"] == "11"
    assert int(progress[-1]["step"]) == int(progress[-1]["steps"])


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


def template_repository(path: Path) -> Path:
    """A git repository holding this template's files as they are now (committed or not), in one commit."""
    files = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=TEMPLATE).stdout
    for name in filter(None, files.split("\0")):
        if (TEMPLATE / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TEMPLATE / name, path / name)
    run("git", "init", "--quiet", cwd=path)
    run("git", "add", "--all", cwd=path)
    run("git", "commit", "--quiet", "--message", "template", cwd=path)
    return path


def cruft(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "cruft", *args, cwd=cwd)


@pytest.mark.parametrize("route", ["cruft create", "cookiecutter, then cruft link"])
def test_cruft_update_applies_a_new_template_version_cleanly(tmp_path, route):
    template = template_repository(tmp_path / "template")
    answers = {"project": "lab-notes", "use_wandb": "no", "cluster_presets": "workstation"}
    if route == "cruft create":
        cruft(
            "create",
            "--no-input",
            "--output-dir",
            "out",
            "--extra-context",
            json.dumps(answers),
            str(template),
            cwd=tmp_path,
        )
        project = tmp_path / "out" / "lab-notes"
    else:
        run(
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            "out",
            str(template),
            *(f"{key}={value}" for key, value in answers.items()),
            cwd=tmp_path,
        )
        project = tmp_path / "out" / "lab-notes"
    run("git", "init", "--quiet", cwd=project)
    run("git", "add", "--all", cwd=project)
    run("git", "commit", "--quiet", "--message", "baked", cwd=project)
    if route != "cruft create":
        recorded = (project / ".cookiecutter.json").read_text(encoding="utf-8")
        cruft("link", "--no-input", "--extra-context", recorded, str(template), cwd=project)
        run("git", "add", "--all", cwd=project)
        run("git", "commit", "--quiet", "--message", "linked", cwd=project)
    # The link recorded the real answers: the project is what the template makes from them.
    cruft("diff", "--exit-code", cwd=project)
    assert json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]["use_wandb"] == "no"

    # The template's next version changes a file of the project.
    readme = template / "{{cookiecutter.project}}" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nA paragraph of the next version.\n", encoding="utf-8")
    run("git", "commit", "--quiet", "--all", "--message", "next version", cwd=template)

    cruft("update", "--skip-apply-ask", cwd=project)
    assert not list(project.rglob("*.rej")), "cruft update left rejected hunks"
    assert (project / "README.md").read_text(encoding="utf-8").endswith("\nA paragraph of the next version.\n")
    changed = {line[3:] for line in run("git", "status", "--porcelain", cwd=project).stdout.splitlines()}
    assert changed == {"README.md", ".cruft.json"}
    cruft("check", cwd=project)


def test_pre_commit_runs_offline_with_the_projects_own_ruff(tmp_path):
    project = bake(tmp_path)
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    # Nothing to download: every hook is a tool of the project's environment.
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {hook["language"] for hook in config["repos"][0]["hooks"]} == {"system"}
    # The environment's ruff is the one the dev group (and so CI) installs.
    dev_group = tomllib.loads((project / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    (ruff,) = [Requirement(spec) for spec in dev_group if Requirement(spec).name == "ruff"]
    assert ruff.specifier.contains(metadata.version("ruff")), (str(ruff), metadata.version("ruff"))

    run("git", "init", "--quiet", cwd=project)
    scratch = project / "src" / "my_project" / "scratch.py"
    scratch.write_text("import sys, os\nprint(sys.argv,os.sep)\n", encoding="utf-8")
    run("git", "add", "--all", cwd=project)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
    }
    hooks = [sys.executable, "-m", "pre_commit", "run", "--all-files"]
    fixing = subprocess.run(hooks, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert fixing.returncode == 1, fixing.stdout + fixing.stderr
    assert scratch.read_text(encoding="utf-8") == "import os\nimport sys\n\nprint(sys.argv, os.sep)\n"

    # Once fixed, pre-commit and CI's checks agree, and the freshly baked files needed no fix.
    run(*hooks, cwd=project, env=env)
    run(sys.executable, "-m", "ruff", "check", ".", cwd=project)
    run(sys.executable, "-m", "ruff", "format", "--check", ".", cwd=project)
    assert run("git", "diff", "--name-only", cwd=project).stdout.split() == ["src/my_project/scratch.py"]


def test_uv_and_pip_find_the_dev_tools_and_extras_in_pyproject(installed_project, tmp_path):
    pyproject = tomllib.loads((installed_project / "pyproject.toml").read_text())
    dev = {Requirement(spec).name for spec in pyproject["dependency-groups"]["dev"]}
    assert {"pytest", "ruff", "pre-commit"} <= dev
    assert "dev" not in pyproject["project"]["optional-dependencies"], "uv sync would remove the dev tools"
    # `uv sync --extra cpu` takes torch and torchvision, and nothing else, from PyTorch's CPU index.
    (index,) = pyproject["tool"]["uv"]["index"]
    assert index["url"] == "https://download.pytorch.org/whl/cpu" and index["explicit"] is True
    sources = pyproject["tool"]["uv"]["sources"]
    assert sources == {name: [{"index": index["name"], "extra": "cpu"}] for name in ("torch", "torchvision")}

    # uv resolves the project with its extras and the dev group against this environment, offline:
    # everything is already there, so nothing but the project itself would be installed.
    uv = [sys.executable, "-m", "uv", "pip", "install", "--dry-run", "--offline", "--no-build-isolation"]
    uv += ["--python", sys.executable, "-e", ".[cpu,mlflow]", "--group", "pyproject.toml:dev"]
    planned = run(*uv, cwd=installed_project, env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv")})
    installs = [line.split()[1] for line in planned.stderr.splitlines() if line.startswith(" + ")]
    assert installs == [installed_project.name], planned.stderr
    # pip reads the same group.
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation"]
    planned = run(*pip, "-e", ".", "--group", "dev", cwd=installed_project)
    assert f"Would install {installed_project.name}-" in planned.stdout

    readme = (installed_project / "README.md").read_text(encoding="utf-8")
    for command in ("uv sync", "uv sync --extra cpu", "uv run python train.py", "pip install -e . --group dev"):
        assert command in readme, command
    assert "https://download.pytorch.org/whl/cpu" in readme


def test_baked_ci_is_current_cached_least_privileged_and_lints(tmp_path):
    project = bake(tmp_path)
    workflow_path = project / ".github" / "workflows" / "ci.yaml"
    workflow = yaml.safe_load(workflow_path.read_text(encoding="utf-8"))
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in workflow["concurrency"]["group"]
    (job,) = workflow["jobs"].values()
    uses = {step["uses"].partition("@")[0]: step for step in job["steps"] if "uses" in step}
    assert uses["actions/checkout"]["uses"] == "actions/checkout@v7"
    assert uses["actions/checkout"]["with"]["persist-credentials"] is False
    # setup-uv publishes no major tags since v8: a release is named.
    assert re.fullmatch(r"astral-sh/setup-uv@v8\.\d+\.\d+", uses["astral-sh/setup-uv"]["uses"])
    assert uses["astral-sh/setup-uv"]["with"]["enable-cache"] is True
    assert uses["astral-sh/setup-uv"]["with"]["activate-environment"] is True
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == ["uv sync --extra cpu", "ruff check . && ruff format --check .", "pytest"]

    # zizmor's offline audit (permissions, credentials, injection, caching), with major tags allowed.
    policy = {"rules": {"unpinned-uses": {"config": {"policies": {"actions/*": "ref-pin", "astral-sh/*": "ref-pin"}}}}}
    (tmp_path / "zizmor.yml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent))
    run(zizmor, "--offline", "--config", str(tmp_path / "zizmor.yml"), str(workflow_path), cwd=project)

    # The lint step passes on a fresh bake, with the ruff of this environment.
    run("bash", "-c", runs[1].replace("ruff ", f"{sys.executable} -m ruff "), cwd=project)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite store, serving artifacts; its URI."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tmp_path / "mlflow-server"
    store.mkdir()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += [
        "--backend-store-uri",
        f"sqlite:///{store}/mlflow.db",
        "--artifacts-destination",
        str(store / "artifacts"),
    ]
    # Background jobs (prompt optimisation, ...) are not needed to track runs: no worker processes for them.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with (store / "server.log").open("w") as log:
        server = subprocess.Popen(
            command, cwd=store, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (store / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow server did not start: " + (store / "server.log").read_text()
            time.sleep(1)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


SECRET = "hunter2-hunter2-hunter2"


def test_mlflow_logger_sends_metrics_params_and_best_checkpoint_to_a_server(installed_project, tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    env = {**train_env(tmp_path), "MLFLOW_TRACKING_URI": mlflow_server, "HF_TOKEN": SECRET}
    command = [sys.executable, "train.py", "logger=mlflow", "trainer.max_epochs=2", f"+hf_token={SECRET}"]
    run(*command, "callbacks.system_monitor=null", cwd=installed_project, env=env)
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(installed_project.name)
    (tracked,) = client.search_runs([experiment.experiment_id])
    assert tracked.info.status == "FINISHED"
    assert tracked.data.tags["run_dir"] == str(run_dir)
    # The final metrics of the run folder reached the server.
    for name in ("val/loss", "val/acc", "train/loss_epoch", "test/acc"):
        assert tracked.data.metrics[name] == pytest.approx(summary["metrics"][name]), name
    assert len(client.get_metric_history(tracked.info.run_id, "val/loss")) == 2
    # The resolved config as parameters, with the secret redacted wherever it was.
    params = tracked.data.params
    assert params["model/optimizer/lr"] == "0.001" and params["trainer/max_epochs"] == "2"
    assert params["hf_token"] == "<redacted>"
    assert not [key for key, value in {**params, **tracked.data.tags}.items() if SECRET in value]

    # The best checkpoint is an artifact, byte for byte, marked best.
    best = Path(summary["best_checkpoint"])
    uploaded = client.download_artifacts(tracked.info.run_id, f"{best.stem}/{best.name}", str(tmp_path / "download"))
    assert Path(uploaded).read_bytes() == best.read_bytes()
    aliases = client.download_artifacts(tracked.info.run_id, f"{best.stem}/aliases.txt", str(tmp_path / "download"))
    assert "best" in Path(aliases).read_text()


def test_help_describes_every_option_and_tab_completion_answers(installed_project):
    text = run(sys.executable, "train.py", "--help", "model=cnn", cwd=installed_project).stdout
    listed: dict[str, dict[str, tuple[str, str]]] = {}
    group = None
    for line in text.split("== Config:")[0].splitlines():
        if header := re.fullmatch(r"([\w/]+):", line):
            group = listed.setdefault(header[1], {})
        elif group is not None and (option := re.fullmatch(r" ([ *])(\w+)(?: +(.*))?", line)):
            group[option[2]] = (option[1], option[3] or "")
    configs = installed_project / "configs"
    on_disk: dict[str, set[str]] = {}
    for path in configs.glob("*/**/*.yaml"):
        if path.relative_to(configs).parts[0] != "hydra":
            on_disk.setdefault(path.parent.relative_to(configs).as_posix(), set()).add(path.stem)
    assert {name: set(options) for name, options in listed.items()} == on_disk
    undescribed = [f"{g}/{o}" for g, options in listed.items() for o, (_, text) in options.items() if not text]
    assert not undescribed, f"config files without a comment at the top: {undescribed}"
    assert listed["model"]["mlp"] == (" ", "A multilayer perceptron: fast on small images (digits, MNIST).")
    assert listed["model"]["cnn"][0] == "*" and listed["data"]["digits"][0] == "*"
    assert "$WANDB_API_KEY" in listed["logger"]["wandb"][1]
    assert 'eval "$(python train.py -sc install=bash)"' in text

    def completions(line: str) -> set[str]:
        env = {**os.environ, "COMP_LINE": line}
        return set(run(sys.executable, "train.py", "-sc", "query=bash", cwd=installed_project, env=env).stdout.split())

    assert completions("python train.py model=") == {f"model={option}" for option in on_disk["model"]}
    assert "logger=mlflow" in completions("python train.py logger=")
    assert completions("python train.py model.optimizer.l") == {"model.optimizer.lr="}
