import json
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
DEFAULTS = json.loads((TEMPLATE / "cookiecutter.json").read_text())


def bake(output_dir: Path, **answers) -> Path:
    """Generate a project from the template with the default answers, changed by ``answers``."""
    return Path(cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)))


def run(*command: str, cwd: Path, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command, failing with its output when it fails."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def installed_project(tmp_path_factory):
    """A project baked with the default answers and installed (editable) into this environment."""
    project = bake(tmp_path_factory.mktemp("installed"))
    run("git", "init", "--quiet", cwd=project)
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "-e", ".", cwd=project)
    yield project
    run(sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", project.name, cwd=project)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real SLURM cluster for the session: slurmctld and two slurmd ("node1", "node2") on localhost."""
    from slurm_cluster import SlurmCluster, slurm_installed

    if not slurm_installed():
        pytest.skip("SLURM is not installed: slurmctld, slurmd, sbatch and sinfo come with `apt-get install slurm-wlm`")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
