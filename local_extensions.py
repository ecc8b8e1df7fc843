"""Jinja extension that makes cookiecutter treat free-text answers as text.

Cookiecutter renders every answer as a Jinja template, so a description such as
"sets {{A}} and {B}" would either fail (undefined variable) or silently change.
Answers that do not reference the ``cookiecutter`` context are emitted verbatim,
and the ``quoted`` filter writes any string as a double-quoted literal that is
valid Python, TOML and YAML alike.
"""

import re

from jinja2.ext import Extension

_REFERENCES_CONTEXT = re.compile(r"\{[{%][^}]*\bcookiecutter\b")
# The project folder is created before the pre-generation hook can reject the answer;
# a name with separators would leave parent folders behind, so it is flattened here and
# refused by the hook.
_PROJECT_FOLDER = "{{cookiecutter.project}}"
_FLAT_PROJECT_FOLDER = "{{ cookiecutter.project | replace('/', '_') | replace('\\\\', '_') }}"


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


class LiteralAnswers(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["quoted"] = quoted

    def preprocess(self, source, name, filename=None):
        # Answers and paths are rendered with ``from_string`` (no template name); files are not.
        if name is not None or filename is not None:
            return source
        if not _REFERENCES_CONTEXT.search(source):
            return _literal(source)
        return source.replace(_PROJECT_FOLDER, _FLAT_PROJECT_FOLDER)
