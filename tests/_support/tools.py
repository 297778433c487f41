"""Find an external tool for a test, or skip with the reason (a failure under CI, see conftest)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ops.core import tools
from tests._support.ports import free_port

__all__ = ["free_port", "require_tool", "stop_process", "tools_env"]


def require_tool(name: str) -> Path:
    """Path of a catalogued tool; skips (fails under CI) with the install command when absent.

    A Go-built tool that ``invoke setup --background-builds`` left building is waited for; a
    failed or dead builder fails the test naming the tool, the log and the command.
    """
    try:
        found = tools.await_background_build(name)
    except tools.BackgroundBuildError as error:
        pytest.fail(str(error.message))
    if found is None:
        tool = tools.CATALOGUE.get(name)
        hint = tool.install_hint() if tool else f"install {name}"
        pytest.skip(f"{name} is not installed; install it with: {hint}")
    return found


def tools_env(**extra: str) -> dict[str, str]:
    """os.environ with the catalogued tools first on PATH (so checkov finds helm, for one)."""
    return {**os.environ, "PATH": tools.search_path(), **extra}


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM a test server, SIGKILL it if it has not exited within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
