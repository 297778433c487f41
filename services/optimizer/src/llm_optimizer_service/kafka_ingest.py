"""Kafka, when ``kafka.brokers`` is set: feedback in, decisions and policy events out.

- **Feedback consumer** on ``llm-optimizer.feedback``, group ``llm-optimizer``, manual commits.
  Each polled batch is validated (the REST API's feedback model); what fails validation, or names
  a decision nobody made, goes to ``llm-optimizer.feedback.dlq`` with the reason in the
  ``reason`` header (and the source topic/partition/offset). The valid rest is recorded through
  the runtime exactly as REST feedback is (one transaction, idempotent per ``decision_id``), and
  only then — feedback durable, dead letters acknowledged by the broker — are the offsets
  committed. While the database is down nothing is committed and the batch is retried, so a
  redelivery (after a crash, a rebalance or a broker restart) is counted once: a repeat is a
  ``duplicate``.
- **Fallback for REST and gRPC feedback**: while the database is down, feedback is produced to
  ``llm-optimizer.feedback`` (acks=all) and acknowledged (``accepted``) once the broker has it;
  the consumer records it when the database is back. Only when the broker cannot take it either
  is the answer 503/UNAVAILABLE.
- **Events out**: every decision on ``llm-optimizer.decisions`` and every policy change made on
  this replica (create, patch, delete, promote, rollback) on ``llm-optimizer.events``, both JSON,
  keyed by workload. They are notifications sent in the background (the database stays the
  record): a broker outage never fails or slows a request; what cannot be sent is dropped with a
  warning (at most ``MAX_BUFFERED`` events are held).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from llm_optimizer_service.api import schemas as s
from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.runtime import Runtime, ServiceUnavailableError
from llm_optimizer_service.settings import Settings
from llm_optimizer_service.storage.repository import FeedbackInput, PendingDecision

log = get_logger(__name__)

FEEDBACK_TOPIC = "llm-optimizer.feedback"
DLQ_TOPIC = "llm-optimizer.feedback.dlq"
DECISIONS_TOPIC = "llm-optimizer.decisions"
EVENTS_TOPIC = "llm-optimizer.events"
GROUP = "llm-optimizer"
MAX_BUFFERED = 100_000
POLL_RECORDS = 500
RETRY_PAUSE = 0.5
FALLBACK_TIMEOUT = 5.0


def parse(value: bytes | None) -> tuple[FeedbackInput | None, str | None]:
    """The feedback in a message, or the reason it is not valid."""
    if not value:
        return None, "empty message"
    try:
        body = s.FeedbackBody.model_validate_json(value)
    except ValidationError as exc:
        return None, f"invalid feedback: {s.validation_problems(exc, root='message')}"
    return body.to_input(), None


class KafkaBridge:
    """Started and stopped by ``serve`` (``server.EXTRA_SERVERS``); inert without brokers."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.brokers = settings.kafka.brokers
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=MAX_BUFFERED)
        self._wake = asyncio.Event()
        if self.brokers:
            runtime.decision_sinks.append(self._on_decision)
            runtime.change_sinks.append(self._on_change)
            runtime.feedback_fallback = self._fallback

    async def start(self) -> None:
        if not self.brokers:
            return
        self._tasks = [
            asyncio.create_task(self._consume(), name="kafka-feedback"),
            asyncio.create_task(self._publish(), name="kafka-events"),
        ]

    async def stop(self, grace: float) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await task
        self._tasks = []
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(KafkaError, OSError):
                    await asyncio.wait_for(client.stop(), max(grace, 1.0))

    # -- events out -------------------------------------------------------------------------

    def _on_decision(self, decision: PendingDecision) -> None:
        self._outbox.append(
            (
                DECISIONS_TOPIC,
                decision.workload,
                {
                    "decision_id": decision.id,
                    "workload": decision.workload,
                    "arm": decision.arm,
                    "propensity": decision.propensity,
                    "at": decision.created_at.isoformat(),
                },
            )
        )
        self._wake.set()

    def _on_change(self, names: Sequence[str]) -> None:
        for name in names:
            state = self.runtime.workloads.get(name)
            event: dict[str, Any] = {
                "type": "policy_changed" if state is not None else "workload_deleted",
                "workload": name,
                "at": datetime.now(UTC).isoformat(),
            }
            if state is not None:
                event["promoted_arm"] = state.record.promoted_arm
                event["canary_percent"] = state.record.canary_percent
                event["strategy"] = state.spec.strategy
            self._outbox.append((EVENTS_TOPIC, name, event))
        self._wake.set()

    async def _producer_ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.brokers, acks="all", linger_ms=5, request_timeout_ms=10000
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                producer = await self._producer_ready()
                while self._outbox:
                    topic, key, payload = self._outbox[0]
                    await producer.send(topic, json.dumps(payload).encode(), key=key.encode())
                    self._outbox.popleft()
            except (KafkaError, OSError) as exc:
                log.warning(
                    "Kafka unavailable; events wait", error=str(exc), buffered=len(self._outbox)
                )
                await asyncio.sleep(RETRY_PAUSE * 4)
                self._wake.set()

    # -- feedback in ------------------------------------------------------------------------

    async def _fallback(self, items: Sequence[FeedbackInput]) -> None:
        """The database is down: make the feedback durable in the broker (acks=all), where this
        consumer (on any replica) records it once the database is back."""
        producer = await asyncio.wait_for(self._producer_ready(), FALLBACK_TIMEOUT)
        sends = [
            await producer.send(
                FEEDBACK_TOPIC,
                json.dumps(dataclasses.asdict(item)).encode(),
                key=item.decision_id.encode(),
            )
            for item in items
        ]
        await asyncio.wait_for(asyncio.gather(*sends), FALLBACK_TIMEOUT)
        log.info("database down: feedback parked on Kafka", events=len(items))

    async def _consume(self) -> None:
        while not self.runtime.policies_loaded:
            await asyncio.sleep(0.05)
        while True:
            try:
                if self._consumer is None:
                    consumer = AIOKafkaConsumer(
                        FEEDBACK_TOPIC,
                        bootstrap_servers=self.brokers,
                        group_id=GROUP,
                        enable_auto_commit=False,
                        auto_offset_reset="earliest",
                        session_timeout_ms=self.settings.kafka.session_timeout_ms,
                        heartbeat_interval_ms=max(
                            self.settings.kafka.session_timeout_ms // 10, 100
                        ),
                        rebalance_timeout_ms=self.settings.kafka.session_timeout_ms,
                    )
                    await consumer.start()
                    self._consumer = consumer
                    log.info("consuming feedback from Kafka", topic=FEEDBACK_TOPIC, group=GROUP)
                batches = await self._consumer.getmany(timeout_ms=500, max_records=POLL_RECORDS)
                for partition, records in batches.items():
                    try:
                        await self._process(partition, records)
                    except (KafkaError, OSError):
                        # not committed: read these again (a repeat is counted once)
                        with contextlib.suppress(KafkaError, AssertionError):
                            self._consumer.seek(partition, records[0].offset)
                        raise
            except (KafkaError, OSError) as exc:
                log.warning("Kafka consumer error; retrying", error=str(exc))
                await asyncio.sleep(RETRY_PAUSE)

    async def _process(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Record, dead-letter, then commit; retried whole until it all succeeds."""
        assert self._consumer is not None
        parsed = [(record, *parse(record.value)) for record in records]
        valid = [(record, item) for record, item, _ in parsed if item is not None]
        while True:
            try:
                items = [item for _, item in valid]
                outcomes = (
                    await self.runtime.record_feedback(items, fallback=False) if items else []
                )
                break
            except ServiceUnavailableError:
                await asyncio.sleep(RETRY_PAUSE)  # nothing committed: durable first
        dead = [(record, reason) for record, _, reason in parsed if reason is not None]
        dead += [
            (record, f"unknown decision_id {outcome.decision_id!r}")
            for (record, _), outcome in zip(valid, outcomes, strict=True)
            if outcome.status == "unknown_decision"
        ]
        for record, reason in dead:
            await self._dead_letter(record, reason)
        await self._consumer.commit({partition: records[-1].offset + 1})

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        producer = await self._producer_ready()
        headers = [
            ("reason", reason.encode()),
            ("source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await producer.send_and_wait(DLQ_TOPIC, record.value, key=record.key, headers=headers)
        log.warning("feedback message dead-lettered", reason=reason, offset=record.offset)


def kafka_bridge(settings: Settings, runtime: Runtime) -> KafkaBridge:
    """The factory ``server.EXTRA_SERVERS`` calls."""
    return KafkaBridge(settings, runtime)
