"""The one place that builds the Python toolchain's commands (uv, nox, ruff) for Invoke tasks.

Commands are argv lists run through ``ops.core.runner.Runner``. ``nox`` runs from the interpreter
that runs Invoke (it is a dependency of the ops package), so it works wherever ``invoke`` does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ops.core import project, tools


def uv_executable() -> str:
    """uv itself: the binary running us (``uv run`` exports UV), else the one on PATH."""
    running = os.environ.get("UV")
    if running and Path(running).is_file():
        return running
    found = tools.which("uv")
    return str(found) if found else "uv"  # the runner turns a missing "uv" into its install hint


def uv(*args: str) -> list[str]:
    """``uv ARGS``."""
    return [uv_executable(), *args]


def uv_run(groups: Sequence[str], *command: str) -> list[str]:
    """``uv run --locked --group G… COMMAND`` in the project's own environment."""
    return uv("run", "--locked", *(f"--group={g}" for g in groups), *command)


def nox(sessions: Sequence[str] = (), posargs: Sequence[str] = ()) -> list[str]:
    """``nox [-s SESSION…] [-- POSARGS]`` (no sessions: nox's defaults, i.e. what CI runs)."""
    argv = [sys.executable, "-m", "nox"]
    if sessions:
        argv += ["--sessions", *sessions]
    if posargs:
        argv += ["--", *posargs]
    return argv


def service_packages() -> list[Path]:
    """Directories of the workspace's service packages (services/*/pyproject.toml)."""
    return sorted(p.parent for p in (project.ROOT / "services").glob("*/pyproject.toml"))
