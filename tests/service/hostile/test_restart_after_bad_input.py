"""After each class of bad input (REST bodies, gRPC messages, Kafka messages) the service is
stopped and started again on the same data dir (and the same broker): it is ready within a bound
and every workload reports exactly what it reported before the restart."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc

from tests._support.api import create_workload
from tests._support.kafka_broker import KafkaBroker
from tests._support.service import RunningService, launch
from tests.service.data_path.test_kafka import (
    decisions,
    feedback_json,
    produce,
    wait_counted,
)
from tests.service.hostile.hostile_input import (
    ARMS,
    bad_feedback_messages,
    give_feedback,
    reports,
    unknown_decision_message,
)

WORKLOADS = ["chat", "bystander-a", "bystander-b"]  # "chat" takes the bad input
READY_WITHIN = 30.0  # seconds from the new process to /health/ready
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def send_rest(service: RunningService, ids: list[str]) -> int:
    sent = 0
    with service.client() as client:
        bodies = [
            ("POST", "/api/v1/feedback", value)
            for decision in ids
            for value in bad_feedback_messages(decision)
            if value is not None
        ]
        bodies += [
            ("PATCH", "/api/v1/workloads/chat", b'{"arms": null}'),
            ("PATCH", "/api/v1/workloads/chat", b'{"objective": {"cost_weight": 1e999}}'),
            ("POST", "/api/v1/workloads/chat/decide", b'{"context": {"x": NaN}}'),
            (
                "POST",
                "/api/v1/feedback/batch",
                b'{"items": [{"decision_id": "x", "quality": NaN}]}',
            ),
            (
                "POST",
                "/api/v1/workloads",
                b'{"name": "nan", "arms": [{"name": "a", "model": "m", "params": {"t": NaN}},'
                b' {"name": "b\\u202e", "model": "m"}]}',
            ),
        ]
        for method, url, body in bodies:
            answer = client.request(
                method, url, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code < 500, (method, url, body, answer.text)
            sent += 1
    return sent


def send_grpc(service: RunningService, ids: list[str]) -> int:
    metadata = (("authorization", f"Bearer {service.api_key}"),)
    sent = 0
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = pb_grpc.OptimizerStub(channel)  # type: ignore[no-untyped-call]
        calls: list[Any] = []
        for decision in ids:
            for value in (math.nan, math.inf, -math.inf, 1e155, 1e308, -1.0):
                request = pb.FeedbackRequest(
                    decision_id=decision, quality=0.5, cost_usd=value, latency_ms=value
                )
                calls.append(lambda r=request: stub.RecordFeedback(r, metadata=metadata))
                calls.append(
                    lambda r=request: stub.RecordFeedbackBatch(
                        pb.FeedbackBatchRequest(items=[r]), metadata=metadata
                    )
                )
                calls.append(
                    lambda r=request: list(stub.StreamFeedback(iter([r]), metadata=metadata))
                )
        context = pb.DecideRequest(workload="chat")
        context.context.update({"x": math.nan, "y": {"z": math.inf}})
        calls.append(lambda: stub.Decide(context, metadata=metadata))
        for call in calls:
            code, details = grpc.StatusCode.OK, ""
            try:
                call()
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
            assert code in ALLOWED, (code, details)
            sent += 1
    return sent


def send_kafka(service: RunningService, ids: list[str], broker: KafkaBroker) -> int:
    hostile = [m for decision in ids for m in bad_feedback_messages(decision)]
    hostile.append(unknown_decision_message())
    (sentinel,) = decisions(service, 1)
    produce(broker, [*hostile, feedback_json(sentinel)])  # type: ignore[list-item]
    wait_counted(service, 1)  # consumed up to the sentinel: every bad message was processed
    return len(hostile)


@pytest.mark.parametrize("kind", ["rest", "grpc", "kafka"])
def test_restart_after_bad_input(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env: dict[str, str] = {}
    kafka: KafkaBroker | None = None
    if kind == "kafka":
        kafka = request.getfixturevalue("broker")
        env = {
            "LLM_OPTIMIZER_KAFKA__BROKERS": kafka.bootstrap,
            "LLM_OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": "3000",
        }
    service = launch(tmp_path, env)
    try:
        with service.client() as client:
            for name in WORKLOADS:
                create_workload(client, name, ARMS)
            for name in WORKLOADS[1:]:
                give_feedback(client, name, 10)
        ids = decisions(service, 3)
        if kind == "rest":
            sent = send_rest(service, ids)
        elif kind == "grpc":
            sent = send_grpc(service, ids)
        else:
            assert kafka is not None
            sent = send_kafka(service, ids, kafka)
        with service.client() as client:
            before = reports(client, WORKLOADS)
        assert service.terminate() == 0, service.logs()[-3000:]
    finally:
        service.terminate()

    started = time.monotonic()
    again = launch(tmp_path, env, timeout=READY_WITHIN)
    try:
        ready_after = time.monotonic() - started
        print(f"{kind}: {sent} bad inputs; ready again after {ready_after:.1f} s")
        assert httpx.get(f"{again.http_url}/health/ready").status_code == 200
        with again.client() as client:
            assert reports(client, WORKLOADS) == before
            health = client.get("/health").json()
        assert health["status"] == "ok", health
    finally:
        again.terminate()
