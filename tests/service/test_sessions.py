"""Sessions over REST, in process on SQLite and PostgreSQL: decide takes a bounded session_id,
a sticky workload keeps a session on one arm (until it has been idle for ttl_seconds), and
session-level feedback credits each decision of the session once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.runtime import StickySessions, session_uniform

from tests._support.api import WORKLOADS, create_workload

ARMS = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}, {"name": "c", "model": "m-c"}]
SESSION_FEEDBACK = "/api/v1/feedback/session"


def _decide(client: TestClient, workload: str, session: str | None, **extra: Any) -> Any:
    body = {"session_id": session, **extra} if session is not None else extra
    answer = client.post(f"{WORKLOADS}/{workload}/decide", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_sticky_sessions_keep_their_arm(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    create_workload(client, "sticky", ARMS, sessions={"sticky": True, "ttl_seconds": 600})
    assert client.get(f"{WORKLOADS}/sticky").json()["sessions"] == {
        "sticky": True,
        "ttl_seconds": 600,
    }
    create_workload(client, "loose", ARMS)
    sessions = [f"user-{i}" for i in range(12)]
    first = {s: _decide(client, "sticky", s) for s in sessions}
    for _ in range(5):
        for session in sessions:
            again = _decide(client, "sticky", session)
            assert again["arm"] == first[session]["arm"]
            assert again["propensity"] == first[session]["propensity"]
            assert again["decision_id"] != first[session]["decision_id"]
    assert len({d["arm"] for d in first.values()}) > 1  # sessions are spread over the arms
    # without sticky sessions a session's decisions follow the plan (uniform over 3 arms here)
    arms = {_decide(client, "loose", "user-0")["arm"] for _ in range(30)}
    assert len(arms) > 1


def test_session_feedback_credits_each_decision(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    create_workload(client, "chat", ARMS)
    decisions = [_decide(client, "chat", "conversation-1") for _ in range(4)]
    _decide(client, "chat", "conversation-2")
    body = {"session_id": "conversation-1", "quality": 0.75, "cost_usd": 0.04,
            "latency_ms": 2000.0}  # fmt: skip
    answer = client.post(SESSION_FEEDBACK, json=body)
    assert answer.status_code == 202, answer.text
    result = answer.json()
    assert result["accepted"] == 4
    assert result["duplicate"] == 0
    assert {i["decision_id"] for i in result["items"]} == {d["decision_id"] for d in decisions}
    report = client.get(f"{WORKLOADS}/chat/report").json()
    arms = {arm["name"]: arm for arm in report["arms"]}
    assert sum(arm["feedback"] for arm in arms.values()) == 4
    for arm in arms.values():
        if arm["feedback"]:
            assert arm["mean_quality"] == pytest.approx(0.75)
            assert arm["mean_cost_usd"] == pytest.approx(0.01)  # the total, split over 4
            assert arm["mean_latency_ms"] == pytest.approx(500.0)
    # a repeat changes nothing; a single decision's feedback is still possible for the others
    repeat = client.post(SESSION_FEEDBACK, json=body).json()
    assert (repeat["accepted"], repeat["duplicate"]) == (0, 4)
    scoped = client.post(SESSION_FEEDBACK, json={**body, "workload": "other"})
    assert scoped.status_code == 404
    missing = client.post(SESSION_FEEDBACK, json={**body, "session_id": "nobody"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "session_not_found"
    assert "pass the session_id to decide first" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_id": "x" * 129}, "session_id"),
        ({"session_id": ""}, "session_id"),
        ({"session_id": "a\u202eb"}, "session_id"),
        ({"session_id": " padded"}, "session_id"),
        ({"session_id": 5}, "session_id"),
    ],
)
def test_session_ids_are_bounded(
    make_client: Callable[..., TestClient], body: dict[str, Any], field: str
) -> None:
    client = make_client()
    create_workload(client, "bounded", ARMS, exist_ok=True)
    answer = client.post(f"{WORKLOADS}/bounded/decide", json=body)
    assert answer.status_code == 422
    assert field in answer.text
    feedback = client.post(SESSION_FEEDBACK, json={**body, "quality": 0.5, "cost_usd": 0,
                                                   "latency_ms": 1})  # fmt: skip
    assert feedback.status_code == 422
    assert field in feedback.text


def test_sessions_settings_are_bounded(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for sessions in ({"ttl_seconds": 0}, {"ttl_seconds": 10**9}, {"sticky": "yes"}, {"x": 1}):
        answer = client.post(WORKLOADS, json={"name": "bad", "arms": ARMS, "sessions": sessions})
        assert answer.status_code == 422, sessions
        assert "sessions" in answer.text


def test_sticky_assignments_expire_and_are_bounded() -> None:
    sticky = StickySessions(capacity=2)
    now = time.monotonic()
    sticky.put(("w", "s1"), "a", 0.5, now + 10)
    assert sticky.get(("w", "s1"), now) == ("a", 0.5)
    assert sticky.get(("w", "s1"), now + 11) is None  # idle past its ttl
    for i in range(3):
        sticky.put(("w", f"s{i}"), "a", 0.5, now + 10)
    assert sticky.get(("w", "s0"), now) is None  # least recently used went first
    assert 0.0 <= session_uniform("w", "s") < 1.0
    assert session_uniform("w", "s") == session_uniform("w", "s")
