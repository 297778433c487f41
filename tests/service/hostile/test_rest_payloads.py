"""Hostile REST bodies against the real service, sent as raw bytes so that ``NaN``, ``Infinity``
and ``1e999`` reach its parser: never a 5xx, every 4xx a JSON body with a message, non-finite
literals refused with FastAPI's 422 naming the field; afterwards the service is ready and the
workloads nobody wrote to report exactly what they reported before."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests._support.service import RunningService
from tests.service.hostile.hostile_input import (
    bounded,
    contains,
    encode,
    error_message,
    non_finite,
    not_json,
    reports,
    seeded_service,
    spoil,
)

BYSTANDERS = ["bystander-a", "bystander-b"]  # workloads the hostile requests never name
TARGET = "target"  # decisions and feedback go here
PATCHED = "patched"  # hostile patches go here
VALID_ARM = {
    "name": "x",
    "model": "m",
    "provider": "p",
    "params": {"t": 0.5},
    "prompt_variant": "v",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with seeded_service(
        tmp_path_factory.mktemp("hostile-rest"), BYSTANDERS, [TARGET, PATCHED]
    ) as running:
        yield running


@pytest.fixture(scope="module")
def before(service: RunningService) -> dict[str, Any]:
    with service.client() as client:
        return reports(client, BYSTANDERS)


@pytest.fixture(scope="module")
def decision_ids(service: RunningService) -> list[str]:
    """Real decisions, so spoiled feedback also reaches the path that counts it."""
    with service.client() as client:
        return [
            client.post(f"/api/v1/workloads/{TARGET}/decide").json()["decision_id"]
            for _ in range(60)
        ]


def feedback(decision_id: str) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "quality": 0.7,
        "cost_usd": 0.01,
        "latency_ms": 250,
        "input_tokens": 100,
        "output_tokens": 20,
        "error": False,
    }


def workload(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "arms": [
            VALID_ARM,
            {**VALID_ARM, "name": "y", "price": {"input_per_1k": 1, "output_per_1k": 2}},
        ],
        "objective": {"quality_weight": 1, "cost_weight": 1, "latency_weight": 0.1},
        "constraints": {"min_quality": 0.5, "max_cost_usd": 1, "max_latency_ms": 1000},
        "strategy": "thompson",
        "strategy_params": {"samples": 10},
        "budget": {"daily_usd": 25},
    }


def patch() -> dict[str, Any]:
    return {
        "arms": [VALID_ARM, {**VALID_ARM, "name": "y"}],
        "objective": {"quality_weight": 1},
        "constraints": {"min_quality": 0.1},
        "strategy": "ucb",
        "strategy_params": {"c": 1.0},
        "budget": {"daily_usd": 0.5},
    }


class Tally:
    """Statuses per body kind; every answer checked against the properties as it arrives."""

    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, int]] = Counter()

    def send(self, client: httpx.Client, kind: str, method: str, url: str, body: Any) -> None:
        content = encode(body)
        try:
            answer = client.request(
                method, url, content=content, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise AssertionError(f"{method} {url} {content[:400]!r} -> {exc!r}") from exc
        self.statuses[(kind, answer.status_code)] += 1
        shown = f"{method} {url} {content[:400]!r} -> {answer.status_code} {answer.text[:400]}"
        assert answer.status_code < 500, shown
        if answer.status_code >= 400:
            error_message(answer)
        if contains(body, not_json):
            assert answer.status_code in (400, 422), shown
        elif contains(body, non_finite):
            assert answer.status_code == 422, shown
            details = answer.json()["detail"]
            assert any(item["type"] == "finite_number" for item in details), shown
            assert all(item["loc"][0] == "body" for item in details), shown

    def summary(self) -> str:
        return ", ".join(
            f"{kind} {status}: {n}" for (kind, status), n in sorted(self.statuses.items())
        )


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


def run(strategy: st.SearchStrategy[Any], send: Callable[[Any], None]) -> None:
    @given(body=strategy)
    @bounded()
    def property_(body: Any) -> None:
        send(body)

    property_()


def test_feedback(service: RunningService, decision_ids: list[str], tally: Tally) -> None:
    bodies = st.sampled_from(decision_ids).flatmap(lambda i: spoil(feedback(i)))
    with service.client() as client:
        run(bodies, lambda body: tally.send(client, "feedback", "POST", "/api/v1/feedback", body))


def test_feedback_batch(service: RunningService, decision_ids: list[str], tally: Tally) -> None:
    bodies = st.lists(st.sampled_from(decision_ids), min_size=1, max_size=3).flatmap(
        lambda ids: spoil({"items": [feedback(i) for i in ids]})
    )
    with service.client() as client:
        run(
            bodies, lambda body: tally.send(client, "batch", "POST", "/api/v1/feedback/batch", body)
        )


def test_create_workload(service: RunningService, tally: Tally) -> None:
    names = st.builds(lambda: f"w-{uuid.uuid4().hex[:10]}")
    with service.client() as client:
        run(
            names.flatmap(lambda name: spoil(workload(name))),
            lambda body: tally.send(client, "create", "POST", "/api/v1/workloads", body),
        )


def test_patch_workload(service: RunningService, tally: Tally) -> None:
    with service.client() as client:
        run(
            spoil(patch()),
            lambda body: tally.send(client, "patch", "PATCH", f"/api/v1/workloads/{PATCHED}", body),
        )


def test_decide(service: RunningService, tally: Tally) -> None:
    valid = {"context": {"user": "u1", "tier": "free", "length": 120, "tags": ["a", "b"]}}
    with service.client() as client:
        run(
            spoil(valid),
            lambda body: tally.send(
                client, "decide", "POST", f"/api/v1/workloads/{TARGET}/decide", body
            ),
        )


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (
            "/api/v1/feedback",
            b'{"decision_id":{"\\ud800":1},"quality":0.7,"cost_usd":0,"latency_ms":1}',
        ),
        (f"/api/v1/workloads/{TARGET}/decide", b'{"context":{"\\ud800":1},"x":{"\\ud800":1}}'),
    ],
)
def test_a_lone_surrogate_key_is_refused_with_422(
    service: RunningService, url: str, body: bytes
) -> None:
    with service.client() as client:
        answer = client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text


def test_afterwards_ready_and_bystanders_unchanged(
    service: RunningService, before: dict[str, Any], tally: Tally
) -> None:
    print(f"REST hostile bodies: {sum(tally.statuses.values())} requests; {tally.summary()}")
    assert sum(tally.statuses.values()) >= 5 * 200, tally.summary()
    assert not [key for key in tally.statuses if key[1] >= 500], tally.summary()
    assert httpx.get(f"{service.http_url}/health/ready").status_code == 200
    health = httpx.get(f"{service.http_url}/health").json()
    assert health["status"] == "ok", health
    with service.client() as client:
        assert reports(client, BYSTANDERS) == before
        # the workloads that took the hostile traffic still answer their reports
        reports(client, [TARGET, PATCHED])
        assert client.post(f"/api/v1/workloads/{TARGET}/decide").status_code == 200
    assert service.process.poll() is None
