"""A database outage after start: decisions keep coming from the last state, feedback answers
503 with Retry-After (nothing is lost silently), /health says degraded, readiness stays 200; and
everything recovers when the database is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.api import create_app

from tests._support.postgres import PostgresServer, postgres_server
from tests._support.tools import require_tool
from tests.service.conftest import Keys, make_settings


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of its own: this test stops it."""
    with postgres_server(require_tool) as server:
        yield server


def test_database_outage_degrades_but_keeps_deciding(
    own_postgres: PostgresServer, tmp_path: Path, keys: Keys
) -> None:
    url = own_postgres.create_database()
    settings = make_settings(tmp_path, url, keys)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {keys.admin}"
        arms = [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]
        assert client.post("/api/v1/workloads", json={"name": "w", "arms": arms}).status_code == 201
        before = client.post("/api/v1/workloads/w/decide").json()
        assert client.get("/health").json()["status"] == "ok"

        own_postgres.stop()
        for _ in range(20):
            assert client.post("/api/v1/workloads/w/decide").status_code == 200
        refused = client.post(
            "/api/v1/feedback",
            json={
                "decision_id": before["decision_id"],
                "quality": 1,
                "cost_usd": 0,
                "latency_ms": 1,
            },
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "unavailable"
        assert "a repeat answers duplicate" in refused.json()["error"]["message"]  # how to retry
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["components"]["database"] == "down"
        assert client.get("/health/ready").status_code == 200

        own_postgres.start()
        accepted = client.post(
            "/api/v1/feedback",
            json={
                "decision_id": before["decision_id"],
                "quality": 1,
                "cost_usd": 0,
                "latency_ms": 1,
            },
        )
        assert accepted.status_code == 202, accepted.text
        assert client.get("/health").json()["status"] == "ok"
        report = client.get("/api/v1/workloads/w/report").json()
        # the decisions made during the outage were queued and written afterwards
        assert sum(arm["decisions"] for arm in report["arms"]) == 21
        assert sum(arm["feedback"] for arm in report["arms"]) == 1
