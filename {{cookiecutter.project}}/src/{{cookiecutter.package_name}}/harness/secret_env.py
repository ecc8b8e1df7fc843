"""Secrets from the environment and ``.env``: loaded for the run, kept out of what it writes.

A variable is secret when a part of its name (split at ``_``) is KEY, TOKEN, SECRET, PASSWORD,
PASSWD or CREDENTIALS, e.g. ``WANDB_API_KEY`` or ``HF_TOKEN``. Its value is replaced by
``<redacted>`` in everything the run writes (resolved config, summary, provenance, log files,
logger configs), and so is the value of any config key named like a secret.
"""

import functools
import logging
import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}
# Shorter values ("1", "true") would blank out unrelated text; real keys and tokens are long.
MIN_SECRET_LENGTH = 8


def load_dotenv(path: Path) -> None:
    """Add the variables of ``path`` (if it exists) to the environment; variables already set win."""
    if path.is_file():
        from dotenv import load_dotenv as _load

        _load(path, override=False)


def is_secret_name(name: str) -> bool:
    return any(part in SECRET_WORDS for part in str(name).upper().replace("-", "_").split("_"))


def secret_values() -> list[str]:
    """Values of secret-looking environment variables, longest first (so no secret is half-replaced)."""
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """``value`` with every secret replaced, in strings, mappings (also by key name) and sequences."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_name(key) and item not in (None, "") else redact(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [redact(item, secrets) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def without_secret_values(conf: Mapping) -> dict:
    """A config for ``instantiate`` in which only keys named like a secret (``api_key``) keep one.

    Loggers copy their arguments (tags, name, notes) into their own files and servers;
    a credential they need is passed under a name that says so.
    """
    secrets = secret_values()
    return {key: item if is_secret_name(key) else redact(item, secrets) for key, item in conf.items()}


def redact_hyperparameters(logger: Any) -> None:
    """Loggers keep the hyperparameters Lightning gives them (hparams.yaml, the W&B config): redact them first."""
    original = logger.log_hyperparams

    @functools.wraps(original)
    def log_hyperparams(params, *args, **kwargs):
        return original(redact(vars(params) if isinstance(params, Namespace) else params), *args, **kwargs)

    logger.log_hyperparams = log_hyperparams


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def redact_logs() -> None:
    """Keep secrets out of every log handler configured so far (Hydra's log file among them)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
