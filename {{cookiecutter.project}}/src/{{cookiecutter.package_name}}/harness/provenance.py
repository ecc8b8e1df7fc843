"""Where a run came from: command, host, package versions, and the exact code it ran.

``provenance.json`` holds the git commit and whether the tree was dirty. When it was, the run
folder also gets ``code.patch``: ``git diff HEAD --binary`` (staged and unstaged changes to
tracked files, binary files included), which ``git apply`` replays onto that commit; and
provenance.json lists the untracked files that git does not ignore, which the patch cannot
hold. A patch larger than the cap is not written, and a warning says so (a large data file
tracked by mistake should not be copied into every run folder). Without git, or outside a
repository, the commit is recorded as unknown and this is said once per process; nothing fails.
"""

import functools
import logging
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .secret_env import REDACTED, secret_values

log = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "wandb")
PATCH_NAME = "code.patch"
# The default of max_code_patch_mb (configs/train.yaml).
MAX_PATCH_MB = 10.0
# Untracked files listed by name in provenance.json; beyond this only their number.
MAX_UNTRACKED_LISTED = 200
CHUNK = 1 << 16


class GitUnavailable(Exception):
    """git is missing, the folder is not a repository, or the repository has no commit yet."""


def _git(root: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=30, env=_git_env())
    except (OSError, subprocess.SubprocessError) as error:
        raise GitUnavailable(f"git could not run ({error})") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitUnavailable(lines[-1] if lines else "")
    return done.stdout


def _git_env() -> dict[str, str]:
    # No index.lock: two runs started at once in one repository must not block each other.
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


@functools.cache
def _say_once(message: str) -> None:
    log.warning(message)


def git_state(root: Path, run_dir: Path | None = None, max_patch_mb: float = MAX_PATCH_MB) -> dict[str, Any]:
    """The commit and dirty flag of ``root``; with ``run_dir``, a dirty tree's changes go to ``code.patch`` there."""
    try:
        # Quiet: in a repository without commits it fails without a message.
        commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD").decode().strip()
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=normal"))
    except GitUnavailable as error:
        reason = str(error) or "the repository has no commit yet"
        _say_once(f"No git commit recorded for the runs of {root}: {reason}. Commit to make runs reproducible.")
        return {"commit": None, "dirty": None}
    state: dict[str, Any] = {"commit": commit, "dirty": dirty}
    if dirty and run_dir is not None:
        state.update(_save_changes(root, run_dir, max_patch_mb))
    return state


def _save_changes(root: Path, run_dir: Path, max_patch_mb: float) -> dict[str, Any]:
    """Write ``git diff HEAD`` to run_dir/code.patch (unless larger than the cap) and list the untracked files."""
    saved: dict[str, Any] = {"patch": None}
    try:
        listing = _git(root, "ls-files", "--others", "--exclude-standard", "-z").decode(errors="replace")
        patch = _diff(root, int(max_patch_mb * 2**20))
    except GitUnavailable as error:
        log.warning("code.patch not written: git failed (%s).", error)
        return saved
    untracked = [name for name in listing.split("\0") if name]
    saved["untracked"] = untracked[:MAX_UNTRACKED_LISTED]
    if len(untracked) > MAX_UNTRACKED_LISTED:
        saved["untracked_not_listed"] = len(untracked) - MAX_UNTRACKED_LISTED
    if patch is None:
        log.warning(
            "code.patch not written: the uncommitted changes exceed %g MiB. Commit them (or ignore large files in "
            ".gitignore) so that this run can be rebuilt; max_code_patch_mb raises the cap.",
            max_patch_mb,
        )
        saved["patch_skipped"] = f"larger than {max_patch_mb:g} MiB"
    elif patch:  # empty when only untracked files make the tree dirty
        (run_dir / PATCH_NAME).write_bytes(_without_secrets(patch))
        saved["patch"] = PATCH_NAME
    return saved


def _diff(root: Path, max_bytes: int) -> bytes | None:
    """``git diff HEAD`` in a form ``git apply`` takes whatever the user's git config; None above ``max_bytes``."""
    command = [
        "git",
        "-c",
        "core.quotepath=off",
        "diff",
        "HEAD",
        "--binary",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
    ]
    try:
        process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_git_env())
    except OSError as error:
        raise GitUnavailable(str(error)) from None
    chunks, size = [], 0
    with process:
        # Read in chunks and stop at the cap: a huge diff is never held in memory whole.
        while chunk := process.stdout.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                process.kill()
                return None
            chunks.append(chunk)
    if process.returncode != 0:
        raise GitUnavailable(f"git diff exited with status {process.returncode}")
    return b"".join(chunks)


def _without_secrets(patch: bytes) -> bytes:
    """The patch with the values of secret environment variables redacted, as everything else a run writes."""
    for secret in secret_values():
        if secret.encode() in patch:
            log.warning("code.patch: the value of a secret variable is redacted; the patch may not apply there.")
            patch = patch.replace(secret.encode(), REDACTED.encode())
    return patch


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def provenance(root: Path, run_dir: Path, max_patch_mb: float = MAX_PATCH_MB) -> dict[str, Any]:
    """What provenance.json holds; writes code.patch into ``run_dir`` when the tree is dirty."""
    return {
        "command": [sys.executable, *sys.argv],
        "host": socket.gethostname(),
        "git": git_state(root, run_dir, max_patch_mb),
        "versions": versions(),
    }
