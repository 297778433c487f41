"""Fixtures for release tests: a clean clone of the committed repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ops.core import project


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def clone_repository(target: Path) -> Path:
    """A clone of the committed HEAD (uncommitted work is not part of a release)."""
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(project.ROOT), str(target)], check=True
    )
    git(target, "checkout", "--quiet", "-B", "main")
    git(target, "config", "user.email", "release-test@example.invalid")
    git(target, "config", "user.name", "release test")
    return target


def clean_env() -> dict[str, str]:
    """The environment for running `uv run invoke` inside a clone (its own .venv)."""
    drop = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "NOX_CURRENT_SESSION")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return clone_repository(tmp_path / "repo")
