"""Fixtures for the container tests: the engine, the stand-in base image and our images."""

from tests._support.docker import (  # noqa: F401 - pytest finds fixtures by name
    base_image,
    cli_image,
    docker_engine,
    service_image,
)
