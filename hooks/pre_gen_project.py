"""Reject bad cookiecutter answers before anything is generated.

Each problem is reported on one line that says what to answer instead; the
non-zero exit makes cookiecutter delete the half-made project folder.
"""

import json
import keyword
import re
import sys

ANSWERS = json.loads({{cookiecutter | jsonify | quoted}})

SUPPORTED_PYTHON = ("3.10", "3.11", "3.12", "3.13")
# Import names the generated project depends on or that tools treat specially.
RESERVED = {
    "torch",
    "torchvision",
    "torchmetrics",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "hydra",
    "hydra_plugins",
    "omegaconf",
    "wandb",
    "submitit",
    "optuna",
    "rich",
    "numpy",
    "sklearn",
    "scipy",
    "pandas",
    "matplotlib",
    "tensorboard",
    "yaml",
    "cookiecutter",
    "pytest",
    "ruff",
    "test",
    "tests",
    "src",
    "configs",
    "train",
    "setup",
    "site",
    "conftest",
}


def problems(answers: dict) -> list[str]:
    found = []
    project = answers["project"]
    if not project or project.strip() != project:
        found.append(f"project {project!r}: give a non-empty name without surrounding spaces, e.g. 'my-project'.")
    elif "/" in project or "\\" in project or project.startswith(".") or project in ("..",):
        found.append(
            f"project {project!r}: a folder name cannot contain path separators or start with a dot; "
            "use letters, digits, '-' and '_', e.g. 'my-project'."
        )
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", project):
        found.append(f"project {project!r}: use letters, digits, '.', '-' and '_' only, e.g. 'my-project'.")

    package = answers["package_name"]
    if not package.isidentifier() or not package.isascii():
        found.append(
            f"package_name {package!r} is not a Python identifier: use lowercase ASCII letters, digits and '_', "
            "not starting with a digit, e.g. 'my_project'."
        )
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        found.append(f"package_name {package!r} is a Python keyword: choose another, e.g. '{package}_lab'.")
    elif package in RESERVED or package in sys.stdlib_module_names:
        found.append(
            f"package_name {package!r} would shadow the module of the same name that the project imports: "
            f"choose another, e.g. '{package}_lab'."
        )
    elif package != package.lower():
        found.append(f"package_name {package!r}: use lowercase (PEP 8), e.g. {package.lower()!r}.")

    if answers["python_version"] not in SUPPORTED_PYTHON:
        found.append(
            f"python_version {answers['python_version']!r} is not supported: answer one of "
            f"{', '.join(SUPPORTED_PYTHON)}."
        )
    email = answers["email"]
    if email and not re.fullmatch(r"[^@\s<>,\"]+@[^@\s<>,\"]+\.[^@\s<>,\"]+", email):
        found.append(f"email {email!r} is not an e-mail address: answer like 'you@example.com', or leave it empty.")
    return found


if __name__ == "__main__":
    errors = problems(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    sys.exit(1 if errors else 0)
