"""Fixtures for the backup, restore, migration-lock and health exit-code tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.redis_server import RedisServer, redis_server


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A throwaway Redis server shared by the session (flush what you write)."""
    with redis_server() as server:
        yield server
