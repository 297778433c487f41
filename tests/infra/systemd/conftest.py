"""Fixtures for the systemd tests: the wheel directory install.sh installs from, and a stand-in
VM with a real systemd as PID 1 (see systemd_vm.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.core.runner import Runner
from ops.deploy import systemd as systemd_target
from tests._support.docker import base_image, docker_engine  # noqa: F401 - fixtures
from tests._support.tools import require_tool
from tests.infra.systemd.systemd_vm import SystemdHost, booted, host_image


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's wheel and its locked dependencies (downloads cached across sessions)."""
    require_tool("uv")
    out = tmp_path_factory.mktemp("systemd-wheels") / "wheels"
    return systemd_target.build_wheels(Runner(echo=False), out)


@pytest.fixture(scope="session")
def systemd_host_image(base_image: str) -> str:  # noqa: F811 - the imported fixture
    """The stand-in base image plus systemd (built once; reused while nothing changed)."""
    return host_image(require_tool("docker"), base_image)


@pytest.fixture(scope="module")
def systemd_host(systemd_host_image: str) -> Iterator[SystemdHost]:
    """A fresh VM per test module, booted with systemd, removed afterwards."""
    with booted(require_tool("docker"), systemd_host_image) as host:
        yield host
