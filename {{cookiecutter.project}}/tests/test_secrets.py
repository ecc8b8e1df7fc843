"""Secrets from ``.env`` and the environment never reach what a run writes, tracebacks included."""

import io
import logging
import shutil
import subprocess
import sys

import pytest

from {{ cookiecutter.package_name }}.harness.secret_env import REDACTED, RedactingStream, redact, redact_logs

from conftest import ROOT, subprocess_env

# Names and lengths that a rule of whole words, and a minimum length, once let through.
DOTENV_SECRETS = {
    "HF_TOKEN": "hf_FakeTokenFromDotEnv0123456789",
    "SHORT_PASSWORD": "hunt3r!",
    "MYTOKEN": "mytok-abcdef-123456",
}
ENV_SECRETS = {
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "API_SECRETS": "apisecret-value-42",
}


@pytest.mark.slow
def test_secrets_never_reach_what_a_sweep_writes(tmp_path):
    """A sweep whose second job fails with the token in its exception: every file, and the console."""
    project = tmp_path / "project"  # a copy of the project, so that its .env is ours
    project.mkdir()
    shutil.copy(ROOT / "train.py", project)
    shutil.copytree(ROOT / "configs", project / "configs")
    (project / ".env").write_text("".join(f"{name}={value}\n" for name, value in DOTENV_SECRETS.items()))
    env = subprocess_env(tmp_path / "logs", **ENV_SECRETS)
    env.pop("PROJECT_ROOT", None)
    loggers = "logger=many" if (ROOT / "configs" / "logger" / "wandb.yaml").is_file() else "logger=tensorboard"
    tags = ",".join("${oc.env:" + name + "}" for name in (*DOTENV_SECRETS, *ENV_SECRETS))
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            loggers,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.accelerator=cpu",
            # The resolved config, the loggers and the model's hyperparameters all see these.
            f"tags=[{tags}]",
            # Job 1 fails after W&B has started, with the token in Lightning's error message.
            "callbacks.model_checkpoint.monitor=val/loss,${oc.env:HF_TOKEN}",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    files = [path for path in sweep_dir.rglob("*") if path.is_file()]
    assert len(files) > 20
    secrets = {**DOTENV_SECRETS, **ENV_SECRETS}
    for path in files:
        content = path.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in content, f"{name} in {path}"
    for name, value in secrets.items():
        assert value not in result.stdout + result.stderr, f"{name} on the console"

    redacted_tags = "tags:\n" + f"- {REDACTED}\n" * len(secrets)
    assert redacted_tags in (sweep_dir / "0" / "config_resolved.yaml").read_text()
    failed_log = (sweep_dir / "1" / "train.log").read_text()
    assert "Traceback" in failed_log and f"monitor='{REDACTED}'" in failed_log
    if loggers == "logger=many":
        (console,) = (sweep_dir / "1").glob("wandb/offline-run-*/files/output.log")
        assert f"monitor='{REDACTED}'" in console.read_text()


def test_what_counts_as_a_secret(monkeypatch):
    monkeypatch.setenv("MYTOKEN", "glued-to-the-word-1234")
    monkeypatch.setenv("API_SECRETS", "plural-name-5678")
    monkeypatch.setenv("DB_PASSWD", "hunt3r!")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("DATA_DIR", "/scratch/not-a-secret")

    text = "x=glued-to-the-word-1234, y=plural-name-5678/z, pw hunt3r! in /scratch/not-a-secret, test: false"
    assert redact(text) == f"x={REDACTED}, y={REDACTED}/z, pw {REDACTED} in /scratch/not-a-secret, test: false"
    # A long value is replaced anywhere; a short one only where it stands as a word of its own.
    assert redact("xxglued-to-the-word-1234yy hunt3r!s hunt3r") == f"xx{REDACTED}yy hunt3r!s hunt3r"
    # Strings are redacted inside structures; numbers and flags stay as they are.
    assert redact({"tags": ["hunt3r!"], "epochs": 3, "test": False}) == {"tags": [REDACTED], "epochs": 3, "test": False}


def test_config_keys_named_like_a_secret_hide_their_text_values():
    hidden = {"api_key": "typed-in", "hfToken": "typed-in", "api_secrets": ["a", "b"]}
    kept = {"max_tokens": 512, "tokenizer": "bert-base", "keypoint_file": "points.csv", "key": None}
    assert redact({**hidden, **kept}) == {**dict.fromkeys(hidden, REDACTED), **kept}


def test_log_records_are_redacted_tracebacks_included(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", DOTENV_SECRETS["HF_TOKEN"])
    handler = logging.FileHandler(tmp_path / "run.log")
    logging.getLogger().addHandler(handler)
    try:
        redact_logs()
        logging.getLogger("some.module").warning("connecting with %s", DOTENV_SECRETS["HF_TOKEN"])
        try:
            raise ValueError(f"bad token {DOTENV_SECRETS['HF_TOKEN']}")
        except ValueError:
            logging.getLogger("some.module").exception("failed")
        handler.flush()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "run.log").read_text()
    assert text.startswith(f"connecting with {REDACTED}\nfailed\nTraceback")
    assert f"ValueError: bad token {REDACTED}" in text
    assert DOTENV_SECRETS["HF_TOKEN"] not in text


def test_console_output_is_redacted_also_for_a_console_capture_patched_in_later(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", DOTENV_SECRETS["HF_TOKEN"])
    terminal, captured = io.StringIO(), []
    stream = RedactingStream(terminal)
    # What W&B's console capture does to sys.stdout when wandb is imported after the wrapper is in place.
    previous_write = stream.write

    def write_and_capture(text):
        captured.append(text)
        return previous_write(text)

    stream.write = write_and_capture
    print("token", DOTENV_SECRETS["HF_TOKEN"], file=stream)
    assert terminal.getvalue() == f"token {REDACTED}\n"
    assert "".join(captured) == f"token {REDACTED}\n"
