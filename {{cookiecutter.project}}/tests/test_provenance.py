"""The exact code of a run: commit, and a dirty tree's changes as a patch that rebuilds it."""

import json
import logging
import random
import subprocess
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.harness.provenance import git_state

from conftest import summary

BINARY = bytes(range(256)) * 4


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.email=test@localhost", "-c", "user.name=test", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


def tracked_files(repo: Path) -> dict[str, bytes]:
    return {name: (repo / name).read_bytes() for name in git(repo, "ls-files").splitlines() if (repo / name).exists()}


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository with one commit: text, binary, a file to delete, and an ignored folder."""
    repo = tmp_path / "project"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "model.py").write_text("def width():\n    return 64\n")
    (repo / "src" / "old.py").write_text("unused = True\n")
    (repo / "weights.bin").write_bytes(BINARY)
    (repo / ".gitignore").write_text("logs/\n")
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "first")
    return repo


def make_dirty(repo: Path) -> None:
    """Unstaged and staged edits, a binary change, a deletion, an untracked file and an ignored one."""
    (repo / "src" / "model.py").write_text("def width():\n    return 128  # wider\n")
    (repo / "src" / "new_layer.py").write_text("class Layer: ...\n")
    git(repo, "add", "src/new_layer.py")
    (repo / "weights.bin").write_bytes(BINARY[::-1] + b"\x00tail")
    (repo / "src" / "old.py").unlink()
    (repo / "notes.txt").write_text("try a wider net\n")
    (repo / "logs").mkdir()
    (repo / "logs" / "ignored.txt").write_text("runs go here\n")


def test_a_dirty_trees_patch_rebuilds_it_on_the_runs_commit(repo, make_cfg, train, tmp_path, monkeypatch):
    make_dirty(repo)
    monkeypatch.setenv("PROJECT_ROOT", str(repo))
    train(make_cfg("debug=fast_dev_run"))
    run_dir = tmp_path / "run"
    assert summary(run_dir)["status"] == "completed"
    recorded = json.loads((run_dir / "provenance.json").read_text())["git"]
    assert recorded["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert recorded["dirty"] is True and recorded["patch"] == "code.patch"
    # Untracked and not ignored: listed, since the patch cannot hold it.
    assert recorded["untracked"] == ["notes.txt"]

    rebuilt = tmp_path / "rebuilt"
    git(tmp_path, "clone", "--quiet", str(repo), str(rebuilt))
    git(rebuilt, "checkout", "--quiet", recorded["commit"])
    git(rebuilt, "apply", "--check", str(run_dir / "code.patch"))
    git(rebuilt, "apply", "--index", str(run_dir / "code.patch"))
    assert tracked_files(rebuilt) == tracked_files(repo)
    assert (rebuilt / "weights.bin").read_bytes() == BINARY[::-1] + b"\x00tail"
    assert not (rebuilt / "src" / "old.py").exists()


def test_a_clean_tree_leaves_no_patch(repo, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert git_state(repo, run_dir) == {"commit": git(repo, "rev-parse", "HEAD").strip(), "dirty": False}
    assert not (run_dir / "code.patch").exists()


def test_a_patch_over_the_cap_is_not_written_and_a_warning_says_so(repo, tmp_path, caplog):
    (repo / "weights.bin").write_bytes(random.Random(0).randbytes(8192))  # incompressible: a ~10 KiB patch
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with caplog.at_level(logging.WARNING):
        state = git_state(repo, run_dir, max_patch_mb=0.001)
    assert state["dirty"] is True and state["patch"] is None
    assert state["patch_skipped"] == "larger than 0.001 MiB"
    assert not (run_dir / "code.patch").exists()
    assert "code.patch not written" in caplog.text and "max_code_patch_mb" in caplog.text


@pytest.mark.parametrize("where", ["not a repository", "no git", "no commit yet"])
def test_without_git_nothing_fails_and_it_is_said_once(tmp_path, monkeypatch, caplog, where):
    folder = tmp_path / "code"
    folder.mkdir()
    if where == "no git":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    elif where == "no commit yet":
        git(folder, "init", "--quiet")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert git_state(folder, run_dir) == {"commit": None, "dirty": None}
    (message,) = [r.getMessage() for r in caplog.records if "No git commit recorded" in r.getMessage()]
    assert str(folder) in message
    assert list(run_dir.iterdir()) == []
