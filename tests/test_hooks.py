"""Bad answers: a one-line message that says what to answer instead, and nothing generated."""

import pytest
from cookiecutter.exceptions import FailedHookException
from reserved_import_names import committed, import_names

from conftest import bake

BAD_ANSWERS = [
    ({"package_name": "1st_project"}, "is not a Python identifier"),
    ({"package_name": "my-project"}, "is not a Python identifier"),
    ({"package_name": "café"}, "is not a Python identifier"),
    ({"package_name": "class"}, "is a Python keyword"),
    ({"package_name": "match"}, "is a Python keyword"),
    ({"package_name": "torch"}, "would shadow the module"),
    ({"package_name": "hydra"}, "would shadow the module"),
    ({"package_name": "lightning"}, "would shadow the module"),
    ({"package_name": "test"}, "would shadow the module"),
    ({"package_name": "random"}, "would shadow the module"),
    ({"package_name": "MyProject"}, "use lowercase"),
    # Import names of dependencies of dependencies: each baked, installed, and then broke train.py.
    ({"package_name": "dotenv"}, "would shadow the module"),
    ({"package_name": "psutil"}, "would shadow the module"),
    ({"package_name": "pynvml"}, "would shadow the module"),
    ({"package_name": "tqdm"}, "would shadow the module"),
    ({"package_name": "jinja2"}, "would shadow the module"),
    ({"package_name": "pil"}, "would shadow the module"),
    ({"package_name": "x" * 300}, "300 characters; give at most 100"),
    ({"project": "", "package_name": "lab"}, "project '': give a non-empty name"),
    ({"project": ".", "package_name": "lab"}, "project '.': a folder name cannot"),
    ({"project": "..", "package_name": "lab"}, "project '..': a folder name cannot"),
    ({"project": "p" * 300, "package_name": "lab"}, "project: 300 characters; give at most 100"),
    ({"project": "proj.", "package_name": "proj"}, "starting and ending with a letter or digit"),
    ({"project": "-proj", "package_name": "proj"}, "starting and ending with a letter or digit"),
    ({"project": "../escape", "package_name": "escape"}, "cannot contain path separators"),
    ({"project": "a/b", "package_name": "a_b"}, "cannot contain path separators"),
    ({"project": ".hidden", "package_name": "hidden"}, "start with a dot"),
    ({"project": "my project", "package_name": "my_project"}, "use letters, digits"),
    ({"python_version": "3.9"}, "python_version '3.9' is not supported: answer one of 3.11, 3.12, 3.13"),
    ({"python_version": "3.10"}, "python_version '3.10' is not supported: answer one of 3.11, 3.12, 3.13"),
    ({"python_version": "3.14"}, "is not supported"),
    ({"python_version": "three"}, "is not supported"),
    ({"email": "not-an-address"}, "is not an e-mail address"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=[str(a)[:60] for a, _ in BAD_ANSWERS])
def test_bad_answer_is_rejected_with_a_clear_message(tmp_path, capfd, answers, message):
    with pytest.raises(FailedHookException):
        bake(tmp_path, **answers)
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert list(tmp_path.iterdir()) == [], "a rejected answer must generate nothing"
    assert not (tmp_path.parent / "escape").exists()


def test_every_problem_is_reported_at_once(tmp_path, capfd):
    with pytest.raises(FailedHookException):
        bake(tmp_path, package_name="torch", python_version="2.7", email="x")
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 3


@pytest.mark.parametrize("choice", [("use_wandb", "maybe"), ("license", "GPL-9"), ("cluster_presets", "cloud")])
def test_unknown_choice_is_rejected(tmp_path, choice):
    with pytest.raises(ValueError, match="choices"):
        bake(tmp_path, **dict([choice]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("answers", [{"email": ""}, {"package_name": "lab_tools"}, {"project": "x"}])
def test_unusual_but_valid_answers_bake(tmp_path, answers):
    assert bake(tmp_path, **answers).is_dir()


def test_reserved_names_are_the_import_names_of_the_dependency_closure():
    """The committed list the hook reads equals what the installed dependencies of a bake provide."""
    assert committed() == import_names(), "run `.venv/bin/python tests/reserved_import_names.py` and commit"
