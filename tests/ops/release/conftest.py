"""Fixtures for release tests: a clean clone of the committed repository, a dry-run release."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ops.core import project
from ops.docker import engine
from tests._support.tools import require_tool

VERSION = project.version()


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


@pytest.fixture(scope="session")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/<version>/ of a dry-run release in a clean clone (built once per test session).

    Shared by every release test (build, verify, installer): read it, never change it in place
    (copy it first; see test_release_verify.py).
    """
    require_tool("pex")
    require_tool("helm")
    repo = clone_repository(tmp_path_factory.mktemp("release") / "repo")
    argv = [
        "uv", "run", "--locked", "invoke", "release", "--dry-run", "--version", VERSION,
        "--no-tests", "--platform", "linux-x86_64", "--platform", "universal",
    ]  # fmt: skip
    if not engine.status().answering:
        argv.append("--no-images")
    result = subprocess.run(
        argv, cwd=repo, env=clean_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return repo / "dist" / VERSION
