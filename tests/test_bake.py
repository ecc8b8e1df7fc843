"""Baking: the exact file set, every choice, no template syntax left, free text kept valid."""

import ast
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import DEFAULTS, TEMPLATE, bake, run

DEFAULT_FILES = {
    ".cookiecutter.json",
    ".github/workflows/ci.yaml",
    ".gitignore",
    ".pre-commit-config.yaml",
    "LICENSE",
    "README.md",
    "pyproject.toml",
    "train.py",
    "evaluate.py",
    "configs/train.yaml",
    "configs/paths/default.yaml",
    "configs/hydra/default.yaml",
    "configs/hydra/help/options.yaml",
    "configs/in_memory_data.yaml",
    "configs/callbacks/default.yaml",
    "configs/callbacks/finite_loss.yaml",
    "configs/callbacks/rng_state.yaml",
    "configs/callbacks/early_stopping.yaml",
    "configs/callbacks/lr_monitor.yaml",
    "configs/callbacks/model_checkpoint.yaml",
    "configs/callbacks/model_summary.yaml",
    "configs/callbacks/none.yaml",
    "configs/callbacks/progress_bar.yaml",
    "configs/callbacks/system_monitor.yaml",
    "configs/callbacks/throughput.yaml",
    "configs/callbacks/ema.yaml",
    "configs/callbacks/validation_images.yaml",
    "configs/cluster/local.yaml",
    "configs/cluster/slurm.yaml",
    "configs/cluster/hpc_a100.yaml",
    "configs/cluster/workstation.yaml",
    "scripts/slurm_job.sh",
    "src/hydra_plugins/my_project_slurm/__init__.py",
    "src/my_project/harness/requeue.py",
    "src/my_project/harness/preemption.py",
    "tests/test_preemption.py",
    "tests/signalling.py",
    "tests/test_slurm.py",
    "configs/data/cifar10.yaml",
    "configs/data/digits.yaml",
    "configs/data/python_docs.yaml",
    "configs/data/fashion_mnist.yaml",
    "configs/data/image_folder.yaml",
    "configs/data/mnist.yaml",
    "configs/debug/fast_dev_run.yaml",
    "configs/debug/limit.yaml",
    "configs/debug/overfit.yaml",
    "configs/debug/profiler.yaml",
    "configs/experiment/cifar10_cnn.yaml",
    "configs/experiment/mnist_mlp.yaml",
    "configs/experiment/python_docs_gpt.yaml",
    "configs/logger/csv.yaml",
    "configs/logger/many.yaml",
    "configs/logger/mlflow.yaml",
    "configs/logger/none.yaml",
    "configs/logger/tensorboard.yaml",
    "configs/logger/wandb.yaml",
    "configs/model/cnn.yaml",
    "configs/model/mlp.yaml",
    "configs/model/gpt.yaml",
    "configs/model/optimizer/adam.yaml",
    "configs/model/optimizer/adamw.yaml",
    "configs/model/optimizer/sgd.yaml",
    "configs/model/scheduler/cosine.yaml",
    "configs/model/scheduler/plateau.yaml",
    "configs/model/scheduler/step.yaml",
    "configs/trainer/cpu.yaml",
    "configs/trainer/default.yaml",
    "configs/trainer/ddp.yaml",
    "configs/trainer/ddp_cpu.yaml",
    "configs/trainer/fsdp.yaml",
    "configs/trainer/multinode.yaml",
    "configs/trainer/gpu.yaml",
    "src/my_project/__init__.py",
    "src/my_project/harness/components.py",
    "src/my_project/harness/config_help.py",
    "src/my_project/harness/devices.py",
    "src/my_project/harness/figures.py",
    "src/my_project/harness/hparams.py",
    "src/my_project/harness/wandb_run.py",
    "src/my_project/harness/callbacks/system_monitor.py",
    "src/my_project/harness/callbacks/throughput.py",
    "src/my_project/harness/callbacks/ema.py",
    "src/my_project/harness/provenance.py",
    "src/my_project/harness/rank_logs.py",
    "tests/test_throughput.py",
    "tests/test_provenance.py",
    "tests/test_rank_logs.py",
    "tests/test_ema.py",
    "src/my_project/harness/callbacks/validation_images.py",
    "src/my_project/harness/distributed.py",
    "src/my_project/harness/lr_finder.py",
    "src/my_project/harness/performance.py",
    "src/my_project/harness/__init__.py",
    "src/my_project/harness/contract.py",
    "src/my_project/harness/evaluation.py",
    "src/my_project/harness/finished_runs.py",
    "src/my_project/harness/predictions.py",
    "src/my_project/harness/resolvers.py",
    "src/my_project/harness/runs.py",
    "src/my_project/harness/checks.py",
    "src/my_project/harness/checkpointing.py",
    "src/my_project/harness/secret_env.py",
    "src/my_project/harness/callbacks/__init__.py",
    "src/my_project/harness/callbacks/bookkeeping.py",
    "src/my_project/harness/callbacks/finite_loss.py",
    "src/my_project/harness/callbacks/monitors.py",
    "src/my_project/harness/callbacks/progress.py",
    "src/my_project/harness/console.py",
    "src/my_project/harness/callbacks/run_progress.py",
    "src/my_project/harness/resume.py",
    "src/my_project/harness/sampling.py",
    "src/my_project/harness/sharding.py",
    "src/my_project/data/__init__.py",
    "src/my_project/data/digits.py",
    "src/my_project/data/text.py",
    "src/my_project/data/image_folder.py",
    "src/my_project/harness/in_memory.py",
    "src/my_project/harness/synthetic.py",
    "src/my_project/data/vision.py",
    "src/my_project/models/__init__.py",
    "src/my_project/models/classifier.py",
    "src/my_project/models/gpt.py",
    "src/my_project/models/nets.py",
    "src/my_project/models/optimization.py",
    "tests/conftest.py",
    "tests/test_configs.py",
    "tests/test_contract.py",
    "tests/test_evaluate.py",
    "tests/test_image_folder.py",
    "tests/test_tasks.py",
    "tests/regression.py",
    "tests/test_train.py",
    "tests/test_reliability.py",
    "tests/test_secrets.py",
    "tests/test_optuna.py",
    "tests/probe.py",
    "tests/interrupt.py",
    "tests/test_resume_exact.py",
    "tests/test_gpt.py",
    "tests/test_distributed.py",
    "tests/test_wandb.py",
    "tests/test_observability.py",
    "configs/hparams_search/optuna.yaml",
    "configs/hydra/sweeper/optuna.yaml",
    "src/hydra_plugins/my_project_optuna/__init__.py",
    "src/my_project/harness/sweeps.py",
    "tests/test_sweeps.py",
}
# What each answer removes from the default file set.
DROPPED = {
    ("use_wandb", "no"): {"configs/logger/wandb.yaml", "tests/test_wandb.py"},
    ("license", "none"): {"LICENSE"},
}
for _license in ("BSD-3-Clause", "Apache-2.0"):
    DROPPED[("license", _license)] = set()
SLURM_FILES = {
    "configs/cluster/slurm.yaml",
    "configs/cluster/hpc_a100.yaml",
    "scripts/slurm_job.sh",
    "src/hydra_plugins/my_project_slurm/__init__.py",
    "tests/test_slurm.py",
}
DROPPED[("cluster_presets", "all")] = set()
DROPPED[("cluster_presets", "slurm")] = {"configs/cluster/workstation.yaml"}
DROPPED[("cluster_presets", "workstation")] = SLURM_FILES
DROPPED[("cluster_presets", "none")] = SLURM_FILES | {"configs/cluster/workstation.yaml"}

NASTY_TEXT = [
    'He said "hi" and left',
    "back\\slash \\n not a newline \\u0041",
    "braces {{ cookie }} {% if %} {# c #} {x} }}",
    "Ünïcødé — 日本語 — emoji 🚀 — RTL עברית",
    "two\nlines\tand a tab",
    "'single' and '''triple''' quotes \"\"\"",
    "yaml: like - [a, b] # not a comment & *anchor !tag",
    "",
]


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}


def test_default_bake_has_exactly_the_expected_files(tmp_path):
    assert files_of(bake(tmp_path)) == DEFAULT_FILES


@pytest.mark.parametrize(("question", "answer"), sorted(DROPPED), ids=lambda v: str(v))
def test_each_choice_bakes_the_expected_files(tmp_path, question, answer):
    project = bake(tmp_path, **{question: answer})
    assert files_of(project) == DEFAULT_FILES - DROPPED[(question, answer)]


def offered_python_versions() -> tuple[str, ...]:
    """SUPPORTED_PYTHON of the pre-generation hook (a Jinja template that parses as Python)."""
    hook = ast.parse((TEMPLATE / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8"))
    (value,) = [
        node.value
        for node in hook.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SUPPORTED_PYTHON"
    ]
    return ast.literal_eval(value)


@pytest.mark.parametrize("python_version", offered_python_versions())
def test_python_version_reaches_pyproject_and_ruff_and_is_enough(tmp_path, python_version):
    project = bake(tmp_path, python_version=python_version)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={python_version}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{python_version.replace('.', '')}"
    # vermin reads every baked Python file and fails on a feature newer than the answered minimum.
    # Without --eval-annotations it skips the value of an annotated assignment (x: T = <value>).
    vermin = "import sys; from vermin import main; sys.exit(main())"
    target = f"--target={python_version}-"
    result = run(
        sys.executable, "-c", vermin, "--no-tips", "--violations", "--eval-annotations", target, ".", cwd=project
    )
    assert "Analyzing" in result.stdout


def test_offered_python_versions_agree_with_prompt_and_readme():
    versions = offered_python_versions()
    assert f"({versions[0]}-{versions[-1]})" in DEFAULTS["__prompts__"]["python_version"]
    assert f"| minimum Python: {versions[0]} to {versions[-1]} |" in (TEMPLATE / "README.md").read_text()


def test_git_tracks_every_baked_file(tmp_path):
    project = bake(tmp_path)
    baked = files_of(project)
    run("git", "init", "--quiet", cwd=project)
    run("git", "add", "--all", cwd=project)
    assert set(run("git", "ls-files", cwd=project).stdout.splitlines()) == baked


def test_no_template_syntax_is_left(tmp_path):
    project = bake(tmp_path)
    for path in project.rglob("*"):
        if path.is_file():
            # GitHub Actions expressions, ${{ ... }}, belong in workflows.
            text = re.sub(r"\$\{\{[^}]*\}\}", "", path.read_text(encoding="utf-8"))
            assert "{{" not in text and "{%" not in text and "cookiecutter." not in text, path


def test_answers_are_recorded_for_later_updates(tmp_path):
    project = bake(tmp_path, project="lab-notes", use_wandb="no")
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert recorded["project"] == "lab-notes" and recorded["package_name"] == "lab_notes"
    assert recorded["use_wandb"] == "no" and "_template" in recorded
    assert "_output_dir" not in recorded, "local paths do not belong in the repository"


def test_package_name_follows_the_project(tmp_path):
    project = bake(tmp_path, project="Cell.Atlas-2")
    assert (project / "src" / "cell_atlas_2" / "__init__.py").is_file()


def assert_project_parses(project: Path) -> None:
    for path in project.rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for path in [*project.rglob("*.yaml"), *project.rglob("*.yml")]:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", NASTY_TEXT)
def test_free_text_is_kept_and_stays_valid(tmp_path, text):
    project = bake(tmp_path, description=text, author=text)
    assert_project_parses(project)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    single_line = " ".join(text.splitlines())
    assert pyproject["project"]["description"] == single_line
    assert pyproject["project"]["authors"][0]["name"] == single_line
    package = project / "src" / DEFAULTS["project"].replace("-", "_") / "__init__.py"
    assert ast.get_docstring(ast.parse(package.read_text(encoding="utf-8")), clean=False) == text
    assert json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))["description"] == text
