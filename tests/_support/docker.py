"""Session fixtures for tests that need the Docker engine, the stand-in base image, or our images.

Use them from any test package by importing them into its ``conftest.py``::

    from tests._support.docker import base_image, docker_engine  # noqa: F401

- ``docker_engine``: an answering engine (starts dockerd when none runs and we are root, as
  ``invoke docker.engine --start`` does); skips with the reason otherwise (a failure under CI).
- ``base_image``: the tag of the stand-in base image (``ARG BASE_IMAGE``'s default), built with
  debootstrap once and cached across sessions (``invoke docker.base-image``).
- ``service_image`` / ``cli_image``: our images, built once per session (BuildKit cache makes a
  re-run cheap) and tagged ``:pytest``; each value is the ``BuildResult`` (ref, seconds, log).
- ``run_once``, ``run_detached``, ``wait_healthy``, ``published_port``, ``layers``: containers
  from those images, for the tests only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import pytest
from docker.models.containers import Container

from ops.core.runner import Runner
from ops.docker import base_image as base
from ops.docker import commands, engine
from ops.docker import images as docker_images
from ops.docker.build_context import IMAGES
from ops.docker.images import BuildResult
from tests._support.tools import require_tool

TEST_TAG = "pytest"


@pytest.fixture(scope="session")
def docker_engine() -> engine.EngineStatus:
    """An answering Docker engine (started here when needed)."""
    require_tool("docker")
    status = engine.status()
    if status.answering:
        return status
    if os.geteuid() != 0:
        pytest.skip(f"{status.describe()}; start one with `uv run invoke docker.engine --start`")
    require_tool("dockerd")
    return engine.ensure_running(Runner(echo=True))


@pytest.fixture(scope="session")
def base_image(docker_engine: engine.EngineStatus) -> str:
    """The stand-in base image's tag (debootstrap + docker import, cached by recipe)."""
    tag = base.default_tag()
    if not base.is_current(tag, base.Recipe()):
        if os.geteuid() != 0:
            pytest.skip("the stand-in base image is missing and debootstrap needs root")
        require_tool("debootstrap")
        base.ensure(Runner(echo=True), tag=tag)
    return tag


def _build(key: str) -> BuildResult:
    require_tool("uv")
    spec = IMAGES[key]
    return docker_images.build(
        Runner(echo=True), spec, tags=[f"{spec.name}:{TEST_TAG}"], quiet=True
    )


@pytest.fixture(scope="session")
def service_image(base_image: str) -> BuildResult:
    """The service image, built once per session as ``llm-optimizer-service:pytest``."""
    return _build("service")


@pytest.fixture(scope="session")
def cli_image(base_image: str) -> BuildResult:
    """The CLI image, built once per session as ``llm-optimizer-cli:pytest``."""
    return _build("cli")


# --- containers from our images (the tests' own helpers over the Docker SDK) --------------------


def layers(ref: str) -> list[str]:
    """The image's layer digests, bottom first."""
    return [str(layer) for layer in commands.image_attrs(ref)["RootFS"]["Layers"]]


def run_detached(ref: str, **kwargs: Any) -> Container:
    """Start a container from ``ref`` (SDK ``containers.run(detach=True)``)."""
    api = engine.client()
    return api.containers.run(ref, detach=True, **kwargs)


def run_once(ref: str, command: Sequence[str] | None = None, **kwargs: Any) -> tuple[int, str]:
    """Run a container to completion; return (exit code, stdout+stderr). The container and its
    anonymous volumes (the service image declares one) are removed afterwards."""
    return commands.run_to_completion(ref, command, **kwargs)


def health_status(container: Container) -> str:
    """The container's health (``starting``/``healthy``/``unhealthy``), or its state."""
    container.reload()
    state = container.attrs["State"]
    health = state.get("Health")
    if state.get("Status") != "running":
        return str(state.get("Status"))
    return str(health["Status"]) if health else "running"


def wait_healthy(container: Container, timeout: float = 60.0) -> float:
    """Wait for the HEALTHCHECK to report healthy; return the seconds it took."""
    started = time.monotonic()
    status = ""
    while time.monotonic() - started < timeout:
        status = health_status(container)
        if status == "healthy":
            return time.monotonic() - started
        if status in ("exited", "dead", "unhealthy"):
            break
        time.sleep(0.5)
    logs = container.logs(tail=40).decode(errors="replace")
    pytest.fail(f"container {container.name} is {status}, not healthy; its log ends:\n{logs}")


def published_port(container: Container, port: int, proto: str = "tcp") -> int:
    """The host port published for the container's ``port``."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/{proto}") or []
    if not bindings:
        pytest.fail(f"container {container.name} publishes no host port for {port}/{proto}")
    return int(bindings[0]["HostPort"])


def project_resources(name: str) -> dict[str, list[str]]:
    """The containers, networks and volumes of Compose project ``name`` (none once it is down)."""
    label = f"com.docker.compose.project={name}"
    api = engine.client()
    try:
        return {
            "containers": [c.name for c in api.containers.list(all=True, filters={"label": label})],
            "networks": [n.name for n in api.networks.list(filters={"label": label})],
            "volumes": [v.name for v in api.volumes.list(filters={"label": label})],
        }
    finally:
        api.close()
