"""Stored state this release cannot use — as an older release or a damaged disk may leave it — is
quarantined per workload: the service starts, the other workloads serve unchanged, /health is
degraded and names it, the report says what and how to fix it, and ``db repair`` rebuilds what
the logs can rebuild. The real service, restarted on the same SQLite file."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.api import create_app
from llm_optimizer_service.settings import load_settings

from tests._support.api import create_workload, round_trips
from tests._support.service import RunningService, service_command, service_env, start_service


def _arm_a_is_better(index: int, decision: Mapping[str, Any]) -> Mapping[str, float]:
    quality = 0.9 if decision["arm"] == "a" else 0.3
    return {"quality": quality, "cost_usd": 0.001 * index, "latency_ms": 100.0 + index}


def _round_trips(service: RunningService, workload: str, count: int) -> None:
    with service.client() as client:
        create_workload(client, workload)
        round_trips(client, workload, count, _arm_a_is_better)


def _report(service: RunningService, workload: str) -> dict[str, Any]:
    with service.client() as client:
        response = client.get(f"/api/v1/workloads/{workload}/report")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _database(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "data" / "llm-optimizer.db")


def _damage(tmp_path: Path) -> None:
    """Infinity in one arm's statistics (what a 1e155 feedback left before the bounds), and a
    spec no release accepts (an unknown strategy)."""
    with _database(tmp_path) as db:
        (raw,) = db.execute(
            "SELECT s.stats FROM arm_stats s JOIN workloads w ON w.id = s.workload_id "
            "WHERE w.name = 'damaged' AND s.arm = 'a'"
        ).fetchone()
        stats = json.loads(raw)
        stats["sumsq_cost"] = math.inf
        db.execute(
            "UPDATE arm_stats SET stats = ? WHERE arm = 'a' AND workload_id = "
            "(SELECT id FROM workloads WHERE name = 'damaged')",
            (json.dumps(stats),),
        )
        (spec,) = db.execute("SELECT spec FROM workloads WHERE name = 'broken'").fetchone()
        db.execute(
            "UPDATE workloads SET spec = ? WHERE name = 'broken'",
            (json.dumps({**json.loads(spec), "strategy": "retired-strategy"}),),
        )


def _repair(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env, _ = service_env(tmp_path)
    return subprocess.run(
        [*service_command(), "db", "repair", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unusable_stored_state_is_quarantined_and_repaired(tmp_path: Path) -> None:
    with start_service(tmp_path) as service:
        for workload in ("healthy", "damaged", "broken"):
            _round_trips(service, workload, 6)
        healthy_before = _report(service, "healthy")
        damaged_before = _report(service, "damaged")
    _damage(tmp_path)

    with start_service(tmp_path) as service:  # starts: nothing stored stops startup
        health = httpx.get(f"{service.http_url}/health").json()
        assert health["status"] == "degraded", health
        assert health["components"]["workloads"] == "degraded"
        assert set(health["quarantined"]) == {"damaged", "broken"}
        assert "arm 'a'" in health["quarantined"]["damaged"][0]
        assert "db repair" in health["quarantined"]["damaged"][0]
        assert "retired-strategy" in health["quarantined"]["broken"][0]

        assert _report(service, "healthy") == healthy_before  # the others are untouched
        damaged = _report(service, "damaged")
        assert damaged["notes"] == health["quarantined"]["damaged"]
        arms = {arm["name"]: arm for arm in damaged["arms"]}
        assert arms["a"]["feedback"] == 0  # decides from no evidence meanwhile
        assert (
            arms["b"]["feedback"] == {a["name"]: a for a in damaged_before["arms"]}["b"]["feedback"]
        )

        with service.client() as client:
            refused = client.post("/api/v1/workloads/broken/decide")
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "workload_quarantined"
            assert "PATCH /api/v1/workloads/broken" in refused.json()["error"]["message"]
            # feedback on the quarantined arm is recorded, to be counted by the repair
            for _ in range(20):
                decision = client.post("/api/v1/workloads/damaged/decide").json()
                if decision["arm"] == "a":
                    break
            assert decision["arm"] == "a"
            recorded = client.post(
                "/api/v1/feedback",
                json={
                    "decision_id": decision["decision_id"],
                    "quality": 1.0,
                    "cost_usd": 0.5,
                    "latency_ms": 50.0,
                },
            )
            assert recorded.status_code == 202, recorded.text
        scrape = httpx.get(service.metrics_url).text
        assert 'optimization_workload_quarantined{workload="damaged"} 1.0' in scrape
        assert 'optimization_workload_quarantined{workload="healthy"} 0.0' in scrape

    listed = _repair(tmp_path, "--dry-run")
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert "damaged/a" in listed.stdout
    assert "broken" in listed.stdout
    repaired = _repair(tmp_path)
    assert repaired.returncode == 1, repaired.stdout + repaired.stderr  # the spec is left
    assert "repaired damaged/a" in repaired.stdout
    assert "broken: the stored spec cannot be used" in repaired.stdout

    with start_service(tmp_path) as service:
        health = httpx.get(f"{service.http_url}/health").json()
        assert set(health["quarantined"]) == {"broken"}, health
        arms = {arm["name"]: arm for arm in _report(service, "damaged")["arms"]}
        before = {arm["name"]: arm for arm in damaged_before["arms"]}
        assert arms["a"]["feedback"] == before["a"]["feedback"] + 1  # the logs replayed
        assert arms["a"]["decisions"] >= before["a"]["decisions"] + 1
        with service.client() as client:  # an operator fixes the spec: served again
            fixed = client.patch("/api/v1/workloads/broken", json={"strategy": "thompson"})
            assert fixed.status_code == 200, fixed.text
            assert client.post("/api/v1/workloads/broken/decide").status_code == 200
        assert httpx.get(f"{service.http_url}/health").json()["status"] == "ok"


def test_a_failing_reestimation_cycle_degrades_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle that keeps failing for a reason other than the database (an injected bug: the
    data path has none left to trigger) makes /health degraded, and healthy again once it
    passes."""
    settings = load_settings(
        data_dir=tmp_path, optimizer={"cycle_interval": 0.05, "flush_interval": 0.02}
    )
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        real_load = runtime.repository.load

        def broken(*args: Any) -> Any:
            raise RuntimeError("injected")

        monkeypatch.setattr(runtime.repository, "load", broken)
        health = _wait_for(client, "degraded")
        assert health["components"]["optimizer"] == "degraded", health
        monkeypatch.setattr(runtime.repository, "load", real_load)
        assert _wait_for(client, "ok")["components"]["optimizer"] == "ok"


def _wait_for(client: TestClient, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        health: dict[str, Any] = client.get("/health").json()
        if health["status"] == status or time.monotonic() > deadline:
            return health
        time.sleep(0.05)
