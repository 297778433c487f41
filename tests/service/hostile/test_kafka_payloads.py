"""Hostile feedback messages on ``llm-optimizer.feedback`` (real tansu broker, real service): not
JSON, empty, NaN, 1e999, huge numbers, wrong types, unknown fields, feedback for a decision nobody
made, plus hypothesis-spoiled bodies. Each goes to ``llm-optimizer.feedback.dlq`` with a reason and
is never counted; valid feedback sent after them — for the very decisions the hostile messages
named — is counted; the service stays ready and the other workloads are untouched.

The broker and the service come from the Kafka suite (conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests._support.api import create_workload
from tests._support.kafka_broker import KafkaBroker
from tests._support.service import RunningService
from tests.service.data_path.test_kafka import (
    counted,
    decisions,
    feedback_json,
    produce,
    read_topic,
    wait_counted,
)
from tests.service.hostile.hostile_input import (
    ARMS,
    bad_feedback_messages,
    bounded,
    encode,
    give_feedback,
    reports,
    spoil,
    unknown_decision_message,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
BYSTANDERS = ["bystander-a", "bystander-b"]
DLQ = "llm-optimizer.feedback.dlq"


def spoiled_messages(examples: int) -> list[bytes]:
    """``examples`` hypothesis-spoiled feedback bodies, each naming a decision nobody made."""
    found: list[bytes] = []
    bodies = st.builds(lambda: str(uuid.uuid4())).flatmap(
        lambda i: spoil({"decision_id": i, "quality": 0.5, "cost_usd": 0.01, "latency_ms": 20})
    )

    @given(body=bodies)
    @bounded(examples)
    def collect(body: Any) -> None:
        found.append(encode(body))

    collect()
    return found


def test_hostile_messages_are_dead_lettered_and_never_counted(
    service: RunningService, broker: KafkaBroker
) -> None:
    with service.client() as client:
        for name in BYSTANDERS:
            create_workload(client, name, ARMS)
            give_feedback(client, name, 12)
        before = reports(client, BYSTANDERS)
    real = decisions(service, 3)
    hostile: list[bytes | None] = [
        *[message for decision in real for message in bad_feedback_messages(decision)],
        unknown_decision_message(),
        *spoiled_messages(200),
    ]
    (sentinel,) = decisions(service, 1)
    produce(broker, [*hostile, feedback_json(sentinel)])  # type: ignore[list-item]
    wait_counted(service, 1)  # the sentinel, behind every hostile message on the partition

    dead = read_topic(broker, DLQ, len(hostile), timeout=30)
    reasons = [
        dict(record.headers).get("reason", b"").decode("utf-8", "replace") for record in dead
    ]
    print(f"Kafka hostile messages: {len(hostile)} sent, {len(dead)} dead-lettered")
    assert len(dead) == len(hostile), (len(dead), len(hostile), reasons[-5:])
    assert all(reasons), [r for r in dead if not dict(r.headers).get("reason")]
    assert sorted(record.value or b"" for record in dead) == sorted(m or b"" for m in hostile)

    # nothing hostile was counted, and the decisions it named still take their feedback
    assert counted(service) == 1
    produce(broker, [feedback_json(decision) for decision in real])
    wait_counted(service, 1 + len(real))

    assert httpx.get(f"{service.http_url}/health/ready").status_code == 200
    with service.client() as client:
        assert reports(client, BYSTANDERS) == before
    assert service.process.poll() is None
