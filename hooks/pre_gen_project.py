"""Reject bad cookiecutter answers before anything is generated.

Each problem is reported on one line that says what to answer instead; the
non-zero exit makes cookiecutter delete the half-made project folder.
"""

import json
import keyword
import re
import sys

ANSWERS = json.loads({{cookiecutter | jsonify | quoted}})

# The baked code needs 3.11 (datetime.UTC, tomllib); tests/test_bake.py checks it with vermin.
SUPPORTED_PYTHON = ("3.11", "3.12", "3.13")
# A distribution name (PEP 508) that is also one folder.
PROJECT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
LONGEST_NAME = 100
# Import names of the baked project's dependency closure (hooks/reserved_import_names.txt), and
# names that its layout, its tools and its users' code use.
RESERVED = {
    *json.loads({{reserved_import_names | jsonify | quoted}}),
    "lightning",
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
    elif len(project) > LONGEST_NAME:
        found.append(f"project: {len(project)} characters; give at most {LONGEST_NAME}, e.g. 'my-project'.")
    elif "/" in project or "\\" in project or project.startswith("."):
        found.append(
            f"project {project!r}: a folder name cannot contain path separators or start with a dot; "
            "use letters, digits, '-' and '_', e.g. 'my-project'."
        )
    elif not PROJECT_NAME.fullmatch(project):
        found.append(
            f"project {project!r}: use letters, digits, '.', '-' and '_', starting and ending with a letter or "
            "digit (pip installs it under this name), e.g. 'my-project'."
        )

    package = answers["package_name"]
    if len(package) > LONGEST_NAME:
        found.append(f"package_name: {len(package)} characters; give at most {LONGEST_NAME}, e.g. 'my_project'.")
    elif not package.isidentifier() or not package.isascii():
        found.append(
            f"package_name {package!r} is not a Python identifier: use lowercase ASCII letters, digits and '_', "
            "not starting with a digit, e.g. 'my_project'."
        )
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        found.append(f"package_name {package!r} is a Python keyword: choose another, e.g. '{package}_lab'.")
    elif package.lower() in RESERVED or package in sys.stdlib_module_names:
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
