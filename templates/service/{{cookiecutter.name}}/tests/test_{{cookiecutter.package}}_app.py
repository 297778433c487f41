"""The app in process (httpx's ASGI transport, lifespan run for real)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgi_lifespan import LifespanManager

from {{ cookiecutter.package }}.app import create_app
from {{ cookiecutter.package }}.settings import Settings


async def _get(paths: list[str], *, start: bool = True) -> list[httpx.Response]:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if not start:
            return [await client.get(path) for path in paths]
        async with LifespanManager(app):
            return [await client.get(path) for path in paths]


def test_health_endpoints_answer_once_started() -> None:
    live, ready, version = asyncio.run(_get(["/health/live", "/health/ready", "/version"]))
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert version.json()["version"]


def test_not_ready_before_startup() -> None:
    (ready,) = asyncio.run(_get(["/health/ready"], start=False))
    assert ready.status_code == 503


def test_settings_read_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("{{ cookiecutter.env_prefix }}SERVER__HTTP_PORT", "18080")
    monkeypatch.setenv("{{ cookiecutter.env_prefix }}LOG__JSON", "true")
    settings = Settings()
    assert settings.server.http_port == 18080
    assert settings.log.json_ is True
    assert Settings.model_fields["server"].default.http_port == {{ cookiecutter.http_port }}
