"""Fixtures for the monitoring tests: the real service with traffic, Redis, the exporters, and a
Prometheus + Alertmanager pair started from Debian's binaries on free 127.0.0.1 ports."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.core.runner import Runner
from ops.monitoring import stack
from tests._support.service import RunningService
from tests._support.service_fixtures import postgres, running_service, service_factory
from tests._support.tools import free_port, require_tool
from tests.monitoring.traffic import drive_traffic

__all__ = ["postgres", "running_service", "service_factory"]


@pytest.fixture(scope="session")
def runner() -> Runner:
    """The ops command runner, quiet (pytest shows output on failure anyway)."""
    return Runner(echo=False)


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool from Debian's prometheus package."""
    return require_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> Path:
    """amtool from Debian's prometheus-alertmanager package."""
    return require_tool("amtool")


@pytest.fixture(scope="session")
def active_service(running_service: RunningService) -> RunningService:
    """The shared service after a decide + feedback round, so its labelled metrics exist."""
    drive_traffic(running_service)
    return running_service


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a free port, without persistence."""
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    server = stack.start(
        "redis-server",
        [
            str(require_tool("redis-server")),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        log_dir=directory,
        echo=False,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            if time.monotonic() > deadline or not server.running():
                raise RuntimeError(f"redis-server did not start:\n{server.log_tail()}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """Start servers through ops.monitoring.stack; every one is stopped at teardown."""
    started: list[stack.Server] = []

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> stack.Server:
        require_tool(argv[0])
        server = stack.start(name, argv, log_dir=tmp_path / "logs", env=env, echo=False)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(5)
