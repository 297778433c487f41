"""Fixtures for the service tests: in-process apps on SQLite and PostgreSQL, real processes."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.api import create_app, hot_path
from llm_optimizer_service.settings import Settings, load_settings

from tests._support.service_fixtures import (
    postgres,
    postgres_url,
    running_service,
    service_factory,
)

__all__ = ["postgres", "postgres_url", "running_service", "service_factory"]


@dataclass
class Keys:
    admin: str
    writer: str
    reader: str

    def header(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    made = Keys(*(f"k-{role}-{secrets.token_hex(12)}" for role in ("admin", "writer", "reader")))
    return made


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes it runs on the embedded SQLite (a file in a fresh state dir, as the
    service's default puts it) and on a real PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        state = tmp_path / "state"
        state.mkdir()
        return f"sqlite:///{state / 'llm-optimizer.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def make_settings(tmp_path: Path, url: str, keys: Keys, **extra: Any) -> Settings:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{keys.admin}\n{keys.writer} read,write\n{keys.reader} read\n")
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database": {"url": url},
        "auth": {"api_keys_file": keys_file},
        "optimizer": {"seed": 7, "flush_interval": 0.02, "cycle_interval": 0.5},
    }
    values.update(extra)
    return load_settings(**values)


@pytest.fixture
def make_client(
    tmp_path: Path, database_url: str, keys: Keys
) -> Iterator[Callable[..., TestClient]]:
    """Factory of in-process clients (lifespan run) on the parametrized database, each to the
    app as ``serve`` runs it: behind decide's hot path (``hot_path.wrap``)."""
    clients: list[TestClient] = []

    def factory(key: str | None = "admin", **extra: Any) -> TestClient:
        settings = make_settings(tmp_path, database_url, keys, **extra)
        client = TestClient(hot_path.wrap(create_app(settings), settings))
        client.__enter__()
        if key is not None:
            client.headers["Authorization"] = f"Bearer {getattr(keys, key)}"
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
