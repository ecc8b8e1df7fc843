"""Secrets from the environment and ``.env``: loaded for the run, kept out of what it writes.

What counts as a secret
    An environment variable (``.env`` is loaded into the environment first) whose name contains
    KEY, TOKEN, SECRET, PASS or CREDENTIAL anywhere, in any case: ``WANDB_API_KEY``, ``HF_TOKEN``,
    ``MYTOKEN``, ``API_SECRETS``, ``DB_PASS``. Not every ``.env`` variable is a secret: ``.env`` also
    holds settings (``LOG_DIR``, ``DATA_DIR``, ``WANDB_MODE``) whose values the config, the run
    folder's paths and the loggers need as they are. A variable whose value is a switch (empty,
    0, 1, true, false, yes, no, on, off, none, null: ``TOKENIZERS_PARALLELISM=false``) hides nothing.

How a value is hidden
    Every occurrence becomes ``<redacted>``. A value of 8 characters or more is replaced wherever
    it appears, also inside a longer word; a shorter one only where it stands as a word of its own
    (no letter or digit directly before or after it), so that a 4-character password does not cut
    every word that contains those letters. Numbers and booleans in configs and metrics are
    values, not text, and stay as they are.

Where
    Strings in the resolved config, summary.json and provenance.json (before they are serialized,
    so escaping cannot hide a value), the printed config, what loggers receive (their arguments,
    hyperparameters and config: hparams.yaml, TensorBoard, W&B), every log record of the process
    (the exception text and traceback of ``log.exception`` included: the log file, W&B's
    ``debug.log``) and everything written to ``sys.stdout`` and ``sys.stderr`` (W&B's console
    capture, SLURM's output file, Hydra's report of an error). Besides, a config key named like a
    secret (a word KEY, TOKEN, SECRET, PASSWORD, PASSWD, PASSPHRASE or CREDENTIAL, plural
    included: ``api_key``, ``hfToken``, ``api_secrets``) shows ``<redacted>`` instead of its text.
    Keys are matched by whole words so that ``tokenizer`` or ``keypoint_file`` keep their values.
"""

import functools
import json
import logging
import os
import re
import sys
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASS", "CREDENTIAL")
SECRET_KEY_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL"}
SWITCH_VALUES = {"", "0", "1", "true", "false", "yes", "no", "on", "off", "none", "null"}
# Shorter values are replaced only as whole words.
SHORT_VALUE = 8
_KEY_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_TRACEBACKS = logging.Formatter()


def load_dotenv(path: Path) -> None:
    """Add the variables of ``path`` (if it exists) to the environment; variables already set win."""
    if path.is_file():
        from dotenv import load_dotenv as _load

        _load(path, override=False)


def is_secret_variable(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def is_secret_key(key: Any) -> bool:
    """A config key whose words (split at ``_``, ``-``, ``.`` and case changes) name a secret."""
    words = (word.upper() for word in _KEY_WORD.findall(str(key)))
    return any(word in SECRET_KEY_WORDS or word.removesuffix("S") in SECRET_KEY_WORDS for word in words)


def secret_values() -> tuple[str, ...]:
    """The values of the secret environment variables, sorted so that the pattern is cached."""
    values = {v for k, v in os.environ.items() if is_secret_variable(k) and v.strip().lower() not in SWITCH_VALUES}
    return tuple(sorted(values))


@functools.lru_cache(maxsize=8)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern | None:
    """One pattern for all secrets, as typed and as JSON or ``repr`` escape them; longest first."""
    forms = {form for value in secrets for form in (value, json.dumps(value)[1:-1], repr(value)[1:-1])}
    alternatives = [
        re.escape(form) if len(form) >= SHORT_VALUE else rf"(?<![^\W_]){re.escape(form)}(?![^\W_])"
        for form in sorted(forms, key=len, reverse=True)
    ]
    return re.compile("|".join(alternatives)) if alternatives else None


def redact(value: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """``value`` with every secret replaced, in strings, mappings (also by key name) and sequences."""
    pattern = _pattern(secret_values() if secrets is None else secrets)
    return _redact(value, pattern)


def _redact(value: Any, pattern: re.Pattern | None) -> Any:
    if isinstance(value, str):
        return value if pattern is None else pattern.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {key: _hidden_by_key(key, item, pattern) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [_redact(item, pattern) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _hidden_by_key(key: Any, item: Any, pattern: re.Pattern | None) -> Any:
    # Numbers and switches under such a key (max_tokens: 512) tell nothing.
    if is_secret_key(key) and item not in (None, "") and not isinstance(item, int | float | bool):
        return REDACTED
    return _redact(item, pattern)


def without_secret_values(conf: Mapping) -> dict:
    """A config for ``instantiate`` in which only keys named like a secret (``api_key``) keep one.

    Loggers copy their arguments (tags, name, notes) into their own files and servers;
    a credential they need is passed under a name that says so.
    """
    pattern = _pattern(secret_values())
    return {key: item if is_secret_key(key) else _redact(item, pattern) for key, item in conf.items()}


def redact_hyperparameters(logger: Any) -> None:
    """Loggers keep the hyperparameters Lightning gives them (hparams.yaml, the W&B config): redact them first."""
    original = logger.log_hyperparams

    @functools.wraps(original)
    def log_hyperparams(params, *args, **kwargs):
        return original(redact(vars(params) if isinstance(params, Namespace) else params), *args, **kwargs)

    logger.log_hyperparams = log_hyperparams


def _redacted_record(record: logging.LogRecord) -> logging.LogRecord:
    pattern = _pattern(secret_values())
    if pattern is None:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it when a handler formats the record
        return record
    cleaned = pattern.sub(REDACTED, message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    if record.exc_info and record.exc_info[1] is not None:
        traceback = _TRACEBACKS.formatException(record.exc_info)
        cleaned = pattern.sub(REDACTED, traceback)
        if cleaned != traceback:
            # Formatters print exc_text as it is; without exc_info none formats the original again.
            record.exc_text, record.exc_info = cleaned, None
    if record.stack_info:
        record.stack_info = pattern.sub(REDACTED, record.stack_info)
    return record


def redact_logs() -> None:
    """Redact every log record this process makes from now on, whichever handler writes it."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts_secrets", False):
        return

    def make_record(*args, **kwargs) -> logging.LogRecord:
        return _redacted_record(factory(*args, **kwargs))

    make_record.redacts_secrets = True
    logging.setLogRecordFactory(make_record)


class RedactingStream:
    """A text stream that redacts what is written before the stream it wraps sees it.

    Console capture (W&B's) replaces ``write`` on ``sys.stdout`` with a function that calls the
    previous ``write`` and records the text. Assigned to this wrapper, that function is kept behind
    the redaction, so what it records is redacted too.
    """

    def __init__(self, stream):
        self.__dict__.update(wrapped=stream, _target=stream.write)

    @property
    def write(self):
        target = self._target
        return lambda text: target(redact(text) if isinstance(text, str) else text)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "write":
            self.__dict__["_target"] = value
        else:
            super().__setattr__(name, value)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["wrapped"], name)


def redact_console() -> None:
    """Redact what this process writes to ``sys.stdout`` and ``sys.stderr`` from now on."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


def redact_output() -> None:
    """Keep secrets out of the log records and the console output of this process."""
    redact_logs()
    redact_console()
