"""Find an external tool for a test, or skip with the reason (a failure under CI, see conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from ops.core import tools


def require_tool(name: str) -> Path:
    """Path of a catalogued tool; skips (fails under CI) with the install command when absent."""
    found = tools.which(name)
    if found is None:
        tool = tools.CATALOGUE.get(name)
        hint = tool.install_hint() if tool else f"install {name}"
        pytest.skip(f"{name} is not installed; install it with: {hint}")
    return found


def tools_env(**extra: str) -> dict[str, str]:
    """os.environ with the catalogued tools first on PATH (so checkov finds helm, for one)."""
    return {**os.environ, "PATH": tools.search_path(), **extra}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
