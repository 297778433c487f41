"""The REST API in process (lifespan run), on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.runtime import MISS_TTL
from llm_optimizer_service.storage.models import PolicyAudit
from sqlalchemy import select

from tests._support.api import ARM_FIELDS, REPORT_FIELDS
from tests.service.conftest import Keys

ARMS = [
    {"name": "big", "model": "gpt-big", "provider": "openai", "params": {"temperature": 0.1}},
    {"name": "small", "model": "gpt-small", "prompt_variant": "short"},
]


def create(client: TestClient, name: str = "chat", **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v1/workloads", json={"name": name, "arms": ARMS, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def decide(client: TestClient, name: str = "chat") -> dict[str, Any]:
    response = client.post(f"/api/v1/workloads/{name}/decide", json={"context": {"user": "x"}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def feedback(decision_id: str, quality: float = 0.9) -> dict[str, Any]:
    return {"decision_id": decision_id, "quality": quality, "cost_usd": 0.01, "latency_ms": 250}


def assert_error(response: Any, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def test_auth_scopes(make_client: Callable[..., TestClient], keys: Keys) -> None:
    client = make_client(key=None)
    assert_error(client.get("/api/v1/workloads"), 401, "unauthorized")
    assert client.get("/api/v1/workloads").headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/api/v1/workloads", headers=keys.header("wrong")), 401)
    reader = keys.header(keys.reader)
    assert client.get("/api/v1/workloads", headers=reader).status_code == 200
    created = client.post("/api/v1/workloads", json={"name": "x", "arms": ARMS}, headers=reader)
    assert_error(created, 403, "forbidden")
    writer = keys.header(keys.writer)
    assert (
        client.post(
            "/api/v1/workloads", json={"name": "x", "arms": ARMS}, headers=writer
        ).status_code
        == 201
    )
    assert_error(
        client.post("/api/v1/workloads/x/promote", json={"arm": "big"}, headers=writer), 403
    )
    assert_error(client.get("/api/v1/admin/stats", headers=writer), 403)
    assert client.get("/api/v1/admin/stats", headers=keys.header(keys.admin)).status_code == 200
    # the probes and the version need no key
    for path in ("/health/live", "/health/ready", "/health", "/version", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_workload_crud(client: TestClient) -> None:
    body = create(client, constraints={"min_quality": 0.7}, objective={"cost_weight": 2})
    assert body["name"] == "chat"
    assert body["strategy"] == "thompson"
    assert body["arms"][0]["params"] == {"temperature": 0.1}
    assert body["constraints"]["min_quality"] == 0.7
    assert body["objective"] == {"quality_weight": 1.0, "cost_weight": 2.0, "latency_weight": 0.0}
    assert_error(client.post("/api/v1/workloads", json={"name": "chat", "arms": ARMS}), 409)
    assert (
        client.post("/api/v1/workloads", json={"name": "Bad_Name", "arms": ARMS}).status_code == 422
    )
    assert (
        client.post("/api/v1/workloads", json={"name": "one", "arms": ARMS[:1]}).status_code == 422
    )
    dup = client.post("/api/v1/workloads", json={"name": "dup", "arms": [ARMS[0], ARMS[0]]})
    assert_error(dup, 422, "invalid_workload")
    fixed = client.post("/api/v1/workloads", json={"name": "f", "arms": ARMS, "strategy": "fixed"})
    assert_error(fixed, 422, "invalid_workload")
    assert "strategy_params.arm" in fixed.json()["error"]["message"]

    listed = client.get("/api/v1/workloads").json()
    assert [w["name"] for w in listed["items"]] == ["chat"]
    assert client.get("/api/v1/workloads/chat").json()["name"] == "chat"
    assert_error(client.get("/api/v1/workloads/nope"), 404, "workload_not_found")

    patched = client.patch(
        "/api/v1/workloads/chat", json={"strategy": "fixed", "strategy_params": {"arm": "small"}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["strategy"] == "fixed"
    assert {decide(client)["arm"] for _ in range(20)} == {"small"}

    assert client.delete("/api/v1/workloads/chat").status_code == 204
    assert_error(client.get("/api/v1/workloads/chat"), 404)
    assert_error(client.post("/api/v1/workloads/chat/decide"), 404)
    assert_error(client.delete("/api/v1/workloads/chat"), 404)


def test_a_workload_created_on_another_replica_is_served_at_once(
    make_client: Callable[..., TestClient],
) -> None:
    """Two replicas of one database, neither reloading on its own (an hour's cycle, no Redis):
    a workload created on one is served by the other at its first request (looked up on the
    miss), and a name unknown to both stays 404, looked up again after MISS_TTL."""
    slow = {"seed": 7, "flush_interval": 0.02, "cycle_interval": 3600}
    first, second = make_client(optimizer=slow), make_client(optimizer=slow)
    create(first)
    assert decide(second)["arm"] in {"big", "small"}
    assert second.get("/api/v1/workloads/chat/report").status_code == 200
    assert_error(second.post("/api/v1/workloads/late/decide"), 404, "workload_not_found")
    create(first, "late")
    # remembered as unknown for MISS_TTL (1 s): no database query per request for a bad name
    assert_error(second.post("/api/v1/workloads/late/decide"), 404, "workload_not_found")
    time.sleep(MISS_TTL + 0.1)
    assert decide(second, "late")["arm"] in {"big", "small"}


def test_decide_feedback_report(client: TestClient) -> None:
    create(client)
    decision = decide(client)
    assert set(decision) == {"decision_id", "arm", "config", "propensity"}
    assert decision["arm"] in {"big", "small"}
    assert 0 <= decision["propensity"] <= 1
    assert set(decision["config"]) == {"model", "provider", "params", "prompt_variant"}
    # decide without a body works too
    assert client.post("/api/v1/workloads/chat/decide").status_code == 200

    first = client.post("/api/v1/feedback", json=feedback(decision["decision_id"]))
    assert first.status_code == 202, first.text
    assert first.json() == {"decision_id": decision["decision_id"], "status": "accepted"}
    again = client.post("/api/v1/feedback", json=feedback(decision["decision_id"], 0.1))
    assert again.status_code == 202
    assert again.json()["status"] == "duplicate"
    assert_error(
        client.post("/api/v1/feedback", json=feedback("00000000-0000-0000-0000-000000000000")),
        404,
        "decision_not_found",
    )
    assert (
        client.post("/api/v1/feedback", json={**feedback("x"), "quality": 1.5}).status_code == 422
    )

    report = client.get("/api/v1/workloads/chat/report").json()
    assert set(report) == REPORT_FIELDS | {"pacing", "evaluation"}
    assert report["pacing"] is None  # no budget
    assert report["workload"] == "chat"
    assert report["strategy"] == "thompson"
    assert {arm["name"] for arm in report["arms"]} == {"big", "small"}
    for arm in report["arms"]:
        assert set(arm) == ARM_FIELDS
    counted = {arm["name"]: arm for arm in report["arms"]}[decision["arm"]]
    assert counted["feedback"] == 1  # the duplicate was not counted
    assert counted["mean_quality"] == pytest.approx(0.9)
    assert sum(arm["decisions"] for arm in report["arms"]) == 2
    assert set(report["drift"]) == {"score", "detected", "arm", "since"}
    assert_error(client.get("/api/v1/workloads/nope/report"), 404)


def test_feedback_batch(client: TestClient) -> None:
    create(client)
    ids = [decide(client)["decision_id"] for _ in range(5)]
    assert client.post("/api/v1/feedback", json=feedback(ids[0])).status_code == 202
    items = [feedback(i) for i in ids] + [feedback(ids[1]), feedback("unknown-decision")]
    response = client.post("/api/v1/feedback/batch", json={"items": items})
    assert response.status_code == 202, response.text
    body = response.json()
    assert [item["status"] for item in body["items"]] == [
        "duplicate",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "duplicate",
        "unknown_decision",
    ]
    assert (body["accepted"], body["duplicate"], body["unknown_decision"]) == (4, 2, 1)
    report = client.get("/api/v1/workloads/chat/report").json()
    assert sum(arm["feedback"] for arm in report["arms"]) == 5
    too_many = {"items": [feedback("x")] * 1001}
    assert client.post("/api/v1/feedback/batch", json=too_many).status_code == 422


def test_promote_canary_rollback_audit(client: TestClient, keys: Keys) -> None:
    create(client)
    assert_error(client.post("/api/v1/workloads/chat/rollback"), 409, "nothing_to_roll_back")
    assert_error(client.post("/api/v1/workloads/chat/promote", json={"arm": "nope"}), 422)
    promoted = client.post("/api/v1/workloads/chat/promote", json={"arm": "small"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["promoted_arm"] == "small"
    assert promoted.json()["changed_by"].startswith("key-")
    assert {decide(client)["arm"] for _ in range(30)} == {"small"}
    canary = client.post(
        "/api/v1/workloads/chat/promote", json={"arm": "big", "canary_percent": 50}
    ).json()
    assert (canary["promoted_arm"], canary["canary_percent"]) == ("big", 50)
    arms = [decide(client)["arm"] for _ in range(200)]
    assert arms.count("big") / len(arms) > 0.4  # 50% pinned plus the strategy's share
    rolled = client.post("/api/v1/workloads/chat/rollback").json()
    assert (rolled["promoted_arm"], rolled["canary_percent"]) == ("small", None)
    rolled = client.post("/api/v1/workloads/chat/rollback").json()
    assert rolled["promoted_arm"] is None
    assert_error(client.post("/api/v1/workloads/chat/rollback"), 409)

    # The audit trail is the policy_audit table (docs/service.md), read here as an operator would.
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.repository.engine.connect() as connection:
        audit = connection.execute(
            select(PolicyAudit.action, PolicyAudit.arm, PolicyAudit.previous_arm, PolicyAudit.actor)
            .where(PolicyAudit.workload == "chat")
            .order_by(PolicyAudit.id)
        ).all()
    assert [(action, arm, previous) for action, arm, previous, _ in audit] == [
        ("promote", "small", None),
        ("promote", "big", "small"),
        ("rollback", "small", "big"),
        ("rollback", None, "small"),
    ]
    assert all(actor.startswith("key-") and keys.admin not in actor for *_, actor in audit)


def test_request_limits_and_request_id(client: TestClient) -> None:
    big = {"name": "x" * 3_000_000, "arms": ARMS}
    assert_error(client.post("/api/v1/workloads", json=big), 413, "request_too_large")
    response = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len(client.get("/health/live").headers["x-request-id"]) == 32
    assert_error(client.get("/no/such/path"), 404, "not_found")


def test_admin_stats(client: TestClient) -> None:
    create(client)
    decision = decide(client)
    client.post("/api/v1/feedback", json=feedback(decision["decision_id"]))
    stats = client.get("/api/v1/admin/stats").json()
    assert stats["workloads"] == 1
    assert stats["decisions"] == 1
    assert stats["feedback"] == 1
    assert stats["policies_loaded"] == 1


def test_replicas_share_statistics(make_client: Callable[..., TestClient]) -> None:
    """Two app instances on one database: feedback through either, the same report from both."""
    first = make_client()
    create(first)
    second = make_client()
    decisions = [decide(first) for _ in range(10)] + [decide(second) for _ in range(10)]
    for index, d in enumerate(decisions):
        via = first if index % 2 else second
        assert via.post("/api/v1/feedback", json=feedback(d["decision_id"], 0.5)).status_code == 202
    for d in decisions[:5]:  # repeats through the other replica do not double-count
        assert (
            second.post("/api/v1/feedback", json=feedback(d["decision_id"])).json()["status"]
            == "duplicate"
        )
    one = first.get("/api/v1/workloads/chat/report").json()
    two = second.get("/api/v1/workloads/chat/report").json()
    assert one == two
    assert sum(arm["feedback"] for arm in one["arms"]) == 20


def test_failed_canary_status(client: TestClient) -> None:
    """A canary whose arm is clearly worse than another arm shows as status="failed"."""
    from llm_optimizer_service import metrics

    create(client, name="can")
    client.post("/api/v1/workloads/can/promote", json={"arm": "small", "canary_percent": 50})

    def status() -> str:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        runtime._rebuild_dirty()
        for candidate in metrics.CANARY_STATUSES:
            if metrics.CANARY.labels(workload="can", status=candidate)._value.get() == 1.0:
                return candidate
        raise AssertionError("no canary status set")

    assert status() == "canary"
    for _ in range(60):
        d = decide(client, "can")
        quality = 0.3 if d["arm"] == "small" else 0.9
        client.post("/api/v1/feedback", json=feedback(d["decision_id"], quality))
    assert status() == "failed"
    client.post("/api/v1/workloads/can/rollback")
    assert status() == "none"
