"""Import names of a baked project's dependency closure: a package_name must not take one.

The pre-generation hook runs where these packages may not be installed, so it reads them from a
committed list, hooks/reserved_import_names.txt. This script writes that list from this
environment, which holds every dependency of a baked project (``pip install '.[test]'``);
tests/test_hooks.py fails when the list and the environment disagree. Update with
``.venv/bin/python tests/reserved_import_names.py``.
"""

import platform
import re
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

TEMPLATE = Path(__file__).resolve().parents[1]
LIST = TEMPLATE / "hooks" / "reserved_import_names.txt"
# The answers that add dependencies.
WIDEST_ANSWERS = {"use_wandb": "yes", "cluster_presets": "all"}
HEADER = (
    "# Import names of a baked project's dependency closure (all answers, extras and dependency groups included),\n"
    "# as installed for Python {python} on {platform}. Written by tests/reserved_import_names.py.\n"
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def baked_requirements() -> list[Requirement]:
    """The dependencies and extras of a project baked with every dependency-adding answer."""
    from cookiecutter.main import cookiecutter

    with tempfile.TemporaryDirectory() as output:
        project = cookiecutter(str(TEMPLATE), no_input=True, extra_context=WIDEST_ANSWERS, output_dir=output)
        pyproject = tomllib.loads((Path(project) / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]
    extras = [requirement for group in declared.get("optional-dependencies", {}).values() for requirement in group]
    groups = [requirement for group in pyproject.get("dependency-groups", {}).values() for requirement in group]
    return [Requirement(text) for text in [*declared["dependencies"], *extras, *groups]]


def closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the installed distributions that ``requirements`` need, recursively."""
    found: dict[str, set[str]] = {}
    pending = [(requirement.name, set(requirement.extras)) for requirement in requirements]
    while pending:
        name, extras = pending.pop()
        key = _canonical(name)
        if key in found and extras <= found[key]:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            message = f"{name} is not installed here: install the template's test extra, pip install '.[test]'"
            raise SystemExit(message) from None
        found.setdefault(key, set()).update(extras)
        environments = [{"extra": extra} for extra in found[key] or {""}]
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                pending.append((requirement.name, set(requirement.extras)))
    return set(found)


def import_names() -> list[str]:
    """Lowercase top-level import names of the closure, sorted."""
    distributions = closure(baked_requirements())
    names = {
        module.lower()
        for module, owners in metadata.packages_distributions().items()
        if module.isidentifier() and any(_canonical(owner) in distributions for owner in owners)
    }
    return sorted(names)


def committed() -> list[str]:
    lines = LIST.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def main() -> None:
    python = ".".join(map(str, sys.version_info[:2]))
    header = HEADER.format(python=python, platform=f"{sys.platform} {platform.machine()}")
    LIST.write_text(header + "".join(f"{name}\n" for name in import_names()), encoding="utf-8")
    print(f"wrote {LIST}")


if __name__ == "__main__":
    main()
