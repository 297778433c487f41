"""Kafka with the real service and the real Kafka-protocol broker (tansu): feedback consumed from
llm-optimizer.feedback, invalid messages to the DLQ with the reason, decisions and policy events
published, redelivery counted once, a broker restart in the middle of consumption, and
feedback parked on Kafka while the database is down.

tansu here has in-memory storage only, so a restart empties the log: the test then publishes the
messages again, as a durable broker would redeliver uncommitted ones, and checks that nothing is
lost and nothing counted twice."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests._support.kafka_broker import KafkaBroker, kafka_broker
from tests._support.postgres import postgres_server
from tests._support.service import RunningService, launch
from tests._support.tools import require_tool

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KEY = b"chat"  # one key, one partition: messages are consumed in order


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with kafka_broker() as running:
        yield running


@pytest.fixture(scope="module")
def service(
    broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    env = {
        "LLM_OPTIMIZER_KAFKA__BROKERS": broker.bootstrap,
        "LLM_OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": "3000",
    }
    running = launch(tmp_path_factory.mktemp("kafka-service"), env)
    try:
        with running.client() as client:
            arms = [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]
            assert client.post("/api/v1/workloads", json={"name": "chat", "arms": arms}).is_success
        yield running
    finally:
        running.terminate(10)


def produce(broker: KafkaBroker, values: list[bytes]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait("llm-optimizer.feedback", value, key=KEY)
        finally:
            await producer.stop()

    asyncio.run(send())


def read_topic(broker: KafkaBroker, topic: str, want: int, timeout: float = 20) -> list[Any]:
    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < want and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def feedback_json(decision_id: str, quality: float = 0.8) -> bytes:
    return json.dumps(
        {"decision_id": decision_id, "quality": quality, "cost_usd": 0.002, "latency_ms": 40}
    ).encode()


def decisions(service: RunningService, count: int) -> list[str]:
    with service.client() as client:
        return [
            client.post("/api/v1/workloads/chat/decide").json()["decision_id"] for _ in range(count)
        ]


def counted(service: RunningService) -> int:
    with service.client() as client:
        report = client.get("/api/v1/workloads/chat/report").json()
    return sum(arm["feedback"] for arm in report["arms"])


def wait_counted(service: RunningService, expected: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := counted(service)) != expected:
        assert got < expected, f"counted {got} > {expected}: a message was counted twice"
        assert time.monotonic() < deadline, f"counted {got} of {expected} within {timeout} s"
        time.sleep(0.2)


def test_feedback_from_kafka_with_dead_letters(
    service: RunningService, broker: KafkaBroker
) -> None:
    ids = decisions(service, 20)
    invalid = [b"not json", feedback_json(ids[0], quality=2.0), feedback_json(str(uuid.uuid4()))]
    produce(broker, [*[feedback_json(i) for i in ids], *invalid])
    wait_counted(service, 20)
    dead = read_topic(broker, "llm-optimizer.feedback.dlq", 3)
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert len(reasons) == 3, reasons
    assert any(reason.startswith("invalid feedback: quality") for reason in reasons), reasons
    assert any("unknown decision_id" in reason for reason in reasons), reasons
    assert any("message" in reason or "json" in reason.lower() for reason in reasons), reasons

    # redelivery of the same feedback is not counted twice; a sentinel behind it (same
    # partition) proves the repeats were consumed
    (sentinel,) = decisions(service, 1)
    produce(broker, [*[feedback_json(i) for i in ids], feedback_json(sentinel)])
    wait_counted(service, 21)


def test_decisions_and_policy_events_are_published(
    service: RunningService, broker: KafkaBroker
) -> None:
    ids = decisions(service, 3)
    with service.client() as client:
        assert client.post("/api/v1/workloads/chat/promote", json={"arm": "b"}).is_success
    published = {
        json.loads(r.value)["decision_id"]
        for r in read_topic(broker, "llm-optimizer.decisions", 24)
    }
    assert set(ids) <= published
    events = [json.loads(r.value) for r in read_topic(broker, "llm-optimizer.events", 2)]
    assert {"type": "policy_changed", "workload": "chat", "promoted_arm": "b"}.items() <= (
        events[-1].items()
    ), events


def test_broker_restart_while_consuming_loses_nothing_counts_nothing_twice(
    service: RunningService, broker: KafkaBroker
) -> None:
    before = counted(service)
    ids = decisions(service, 40)
    values = [feedback_json(i) for i in ids]
    produce(broker, values[:20])
    broker.restart()  # mid-consumption; the in-memory log starts empty
    # what a durable log would redeliver: everything not yet committed (here: all of it again)
    produce(broker, values)
    wait_counted(service, before + 40, timeout=60)
    time.sleep(1.0)
    assert counted(service) == before + 40


def test_database_outage_parks_feedback_on_kafka(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The database down, the broker up: feedback is acknowledged once the broker has it (not
    503), and counted exactly once when the database is back, without a restart. (Its own
    broker: the module's service, on another database, must not join this consumer group.)"""
    with postgres_server(require_tool) as postgres, kafka_broker() as broker:
        env = {
            "LLM_OPTIMIZER_DATABASE__URL": postgres.create_database(),
            "LLM_OPTIMIZER_KAFKA__BROKERS": broker.bootstrap,
            "LLM_OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": "3000",
        }
        running = launch(tmp_path_factory.mktemp("kafka-pg-service"), env)
        try:
            with running.client() as client:
                arms = [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]
                body = {"name": "chat", "arms": arms}
                assert client.post("/api/v1/workloads", json=body).is_success
                ids = decisions(running, 10)
                time.sleep(0.5)  # written by the batch writer
                postgres.stop()
                ids += decisions(running, 2)  # made during the outage: still queued in memory
                for decision_id in ids:
                    answer = client.post(
                        "/api/v1/feedback", json=json.loads(feedback_json(decision_id))
                    )
                    assert answer.status_code == 202, answer.text
                    assert answer.json()["status"] == "accepted"
                # a repeat during the outage is parked too, and still counted once later
                repeat = client.post("/api/v1/feedback", json=json.loads(feedback_json(ids[0])))
                assert repeat.status_code == 202
                postgres.start()
            wait_counted(running, 12, timeout=60)
            time.sleep(1.0)
            assert counted(running) == 12
        finally:
            running.terminate(10)
