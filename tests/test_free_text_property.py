"""Whatever free text people answer (description, author), the baked project still parses."""

import ast
import tempfile
from pathlib import Path

import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bake import assert_project_parses

from conftest import DEFAULTS, bake

# Characters that mean something to Jinja, Python, TOML, YAML, JSON or Markdown.
SYNTAX = "{}%#\"'\\\n\r\t :-[]&*!|>?@`,$<=~^"
free_text = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=st.sampled_from(SYNTAX) | st.characters(codec="utf-8"), max_size=60),
)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(description=free_text, author=free_text)
def test_any_free_text_bakes_a_project_that_parses(description, author):
    with tempfile.TemporaryDirectory() as output:
        project = bake(Path(output), description=description, author=author)
        assert_project_parses(project)
        pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        assert pyproject["project"]["description"] == " ".join(description.splitlines())
        assert pyproject["project"]["authors"][0]["name"] == " ".join(author.splitlines())
        package = project / "src" / DEFAULTS["project"].replace("-", "_") / "__init__.py"
        assert ast.get_docstring(ast.parse(package.read_text(encoding="utf-8")), clean=False) == description
