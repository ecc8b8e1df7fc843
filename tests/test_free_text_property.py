"""Whatever free text people answer (description, author), the baked project still parses."""

import ast
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bake import assert_project_parses

from conftest import DEFAULTS, bake

# Characters that mean something to Jinja, Python, TOML, YAML, JSON or Markdown.
SYNTAX = "{}%#\"'\\\n\r\t :-[]&*!|>?@`,$<=~^"
# Jinja that names the answers themselves: cookiecutter once rendered such an answer.
JINJA = ["{{ cookiecutter }}", "{% if cookiecutter %}", "{% endif %}", "{{cookiecutter.project}}", "{# c #}", "{%- raw"]
free_text = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=st.sampled_from(SYNTAX) | st.characters(codec="utf-8"), max_size=60),
    st.lists(st.sampled_from(JINJA) | st.text(max_size=8), max_size=6).map("".join),
)


def assert_answers_kept(project: Path, description: str, author: str) -> None:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == " ".join(description.splitlines())
    assert pyproject["project"]["authors"][0]["name"] == " ".join(author.splitlines())
    package = project / "src" / DEFAULTS["project"].replace("-", "_") / "__init__.py"
    assert ast.get_docstring(ast.parse(package.read_text(encoding="utf-8")), clean=False) == description


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(description=free_text, author=free_text)
def test_any_free_text_bakes_a_project_that_parses(description, author):
    with tempfile.TemporaryDirectory() as output:
        project = bake(Path(output), description=description, author=author)
        assert_project_parses(project)
        assert_answers_kept(project, description, author)


@pytest.mark.parametrize(
    ("description", "author"),
    [
        ("Uses {{ cookiecutter }} in its docs", "{{ cookiecutter.author }}"),
        ("{% if cookiecutter %}yes{% endif %}", "{{ cookiecutter.project | upper }}"),
    ],
)
def test_answers_that_look_like_jinja_stay_as_typed(tmp_path, description, author):
    project = bake(tmp_path, description=description, author=author)
    assert_answers_kept(project, description, author)
