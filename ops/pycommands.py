"""The one place that builds the Python toolchain's commands (uv, nox, ruff) for Invoke tasks.

Commands are argv lists run through ``ops.runner.Runner``. ``nox`` runs from the interpreter
that runs Invoke (it is a dependency of the ops package), so it works wherever ``invoke`` does.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from invoke.exceptions import Exit

from ops import project, tools
from ops.runner import Runner


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


def nox_sessions(runner: Runner) -> dict[str, str]:
    """The sessions noxfile.py defines today: name -> description (read-only, runs in dry runs)."""
    listing = runner.output([*nox(), "--list", "--json"], cwd=project.ROOT)
    return {entry["name"]: entry.get("description") or "" for entry in json.loads(listing)}


def require_nox_session(runner: Runner, name: str, needs: str) -> None:
    """Fail with "not available yet" when noxfile.py has no session called ``name``."""
    sessions = nox_sessions(runner)
    if name not in sessions:
        raise Exit(
            f"not available yet: needs the nox session '{name}' ({needs}); "
            f"noxfile.py defines: {', '.join(sorted(sessions))}",
            code=1,
        )


def service_packages() -> list[Path]:
    """Directories of the workspace's service packages (services/*/pyproject.toml)."""
    return sorted(p.parent for p in (project.ROOT / "services").glob("*/pyproject.toml"))
