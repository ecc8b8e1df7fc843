"""Jinja extension: answers stay text, a bad project name reaches the hook, hooks get their data.

Cookiecutter renders every answer given on the command line or in a config file as a Jinja
template, so a description such as "sets {{A}}", "uses {{ cookiecutter }}" or "{% if cookiecutter
%}" would fail or silently change. Here, of the variables, only the template's own defaults in
cookiecutter.json are rendered (package_name is derived from project); any other value, i.e. an
answer, is emitted verbatim. Paths and hooks are the template's and are rendered as usual.

The project folder is created before the pre-generation hook can judge the answer: a name that
cannot be one new folder ("", ".", "..", "a/b", 300 characters) would end in "directory already
exists", a parent folder or an OSError. Such a name makes a fresh placeholder folder instead;
the hook rejects the answer with a message, and cookiecutter removes the placeholder.

The ``quoted`` filter writes any string as a double-quoted literal that is valid Python, TOML and
YAML alike; ``reserved_import_names`` is the committed list that the pre-generation hook checks
package_name against (see tests/reserved_import_names.py).
"""

import functools
import json
import sys
import uuid
from pathlib import Path

from jinja2.ext import Extension

TEMPLATE = Path(__file__).resolve().parent
PROJECT_FOLDER = "{{cookiecutter.project}}"
# Most file systems allow 255 bytes in a name.
_LONGEST_NAME = 255


@functools.cache
def _defaults() -> frozenset[str]:
    """The strings of cookiecutter.json: Jinja by design (package_name is derived from project)."""
    defaults = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    return frozenset(value for value in defaults.values() if isinstance(value, str))


def _rendering_an_answer() -> bool:
    """Whether cookiecutter is rendering a variable (``prompt.render_variable``), not a path or a hook."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "render_variable" and frame.f_globals.get("__name__") == "cookiecutter.prompt":
            return True
        frame = frame.f_back
    return False


def _literal(text: str) -> str:
    """A Jinja expression that evaluates to ``text`` exactly."""
    escaped = "".join(c if 32 <= ord(c) < 127 and c not in '\\"' else f"\\U{ord(c):08x}" for c in text)
    return '{{ "' + escaped + '" }}'


def quoted(text: str) -> str:
    """``text`` as a double-quoted literal shared by Python, TOML and YAML."""
    out = []
    for c in str(text):
        code = ord(c)
        if c in '\\"':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif code < 32 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            out.append(f"\\u{code:04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def project_folder(name: str) -> str:
    """``name`` when it can be one new folder, else a fresh placeholder (the hook rejects the answer)."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0") or len(name.encode()) > _LONGEST_NAME:
        return f".rejected-project-{uuid.uuid4().hex}"
    return name


@functools.cache
def reserved_import_names() -> list[str]:
    lines = (TEMPLATE / "hooks" / "reserved_import_names.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


class LiteralAnswers(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["quoted"] = quoted
        environment.filters["project_folder"] = project_folder
        environment.globals["reserved_import_names"] = reserved_import_names()

    def preprocess(self, source, name, filename=None):
        # Answers and paths are rendered with ``from_string`` (no template name); files are not.
        if name is not None or filename is not None:
            return source
        if not _rendering_an_answer():
            return "{{ cookiecutter.project | project_folder }}" if source == PROJECT_FOLDER else source
        return source if source in _defaults() else _literal(source)
