"""Pytest fixtures around :mod:`tests._support.service`. Import them into a conftest.py::

from tests._support.service_fixtures import running_service, service_factory  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from tests._support.postgres import PostgresServer, postgres_server
from tests._support.service import RunningService, launch
from tests._support.tools import require_tool


@pytest.fixture
def service_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningService]]:
    """Start any number of services (``factory(env={...}, wait=True)``); all stopped at teardown."""
    started: list[RunningService] = []

    def factory(env: Mapping[str, str] | None = None, *, wait: bool = True) -> RunningService:
        service = launch(tmp_path_factory.mktemp("service"), env, wait=wait)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.terminate()


@pytest.fixture(scope="session")
def running_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One service (SQLite, development) shared by the whole session; do not stop it in tests."""
    service = launch(tmp_path_factory.mktemp("shared-service"))
    yield service
    service.terminate()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (see tests/_support/postgres.py)."""
    with postgres_server(require_tool) as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)
