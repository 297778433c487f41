"""The gRPC API against the real service process, over a real channel: health in step with
readiness, reflection, decide/feedback/report with the REST API's keys and scopes, error codes,
and the grpc_server_* metrics on the metrics port."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from llm_optimizer_service.auth import ApiKey, digest
from llm_optimizer_service.cli import app
from llm_optimizer_service.grpc_api import GrpcServer
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc
from llm_optimizer_service.runtime import Runtime
from llm_optimizer_service.settings import load_settings
from typer.testing import CliRunner

from tests._support.service import RunningService, launch
from tests._support.tools import free_port

SERVICE = "llm_optimizer.v1.Optimizer"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = launch(
        tmp_path_factory.mktemp("grpc-service"), {"LLM_OPTIMIZER_SERVER__SHUTDOWN_DELAY": "2"}
    )
    try:
        with running.client() as client:
            arms = [
                {"name": "cheap", "model": "small", "params": {"temperature": 0.2}},
                {"name": "smart", "model": "large", "provider": "acme"},
            ]
            created = client.post("/api/v1/workloads", json={"name": "chat", "arms": arms})
            assert created.status_code == 201, created.text
        yield running
    finally:
        running.terminate()


@pytest.fixture(scope="module")
def channel(service: RunningService) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as opened:
        grpc.channel_ready_future(opened).result(timeout=10)
        yield opened


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def test_health_is_serving_overall_and_for_the_optimizer(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= (
        services
    )
    described = database.FindFileContainingSymbol(SERVICE)
    assert described.name == "llm_optimizer/v1/optimizer.proto"


def test_decide_feedback_and_report(service: RunningService, channel: grpc.Channel) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    decision = stub.Decide(pb.DecideRequest(workload="chat"), metadata=auth(service.api_key))
    assert decision.arm in {"cheap", "smart"}
    assert 0 < decision.propensity <= 1
    assert decision.config.model == {"cheap": "small", "smart": "large"}[decision.arm]
    if decision.arm == "cheap":
        assert dict(decision.config.params) == {"temperature": 0.2}
    feedback = pb.FeedbackRequest(
        decision_id=decision.decision_id, quality=0.9, cost_usd=0.01, latency_ms=120
    )
    ack = stub.RecordFeedback(feedback, metadata=auth(service.api_key))
    assert (ack.decision_id, ack.status) == (decision.decision_id, "accepted")
    again = stub.RecordFeedback(feedback, metadata=auth(service.api_key))
    assert again.status == "duplicate"

    # the REST API sees the same state (same runtime, same database)
    with service.client() as client:
        rest = client.get("/api/v1/workloads/chat/report").json()
    report = stub.GetReport(pb.GetReportRequest(workload="chat"), metadata=auth(service.read_key))
    as_json = json_format.MessageToDict(report.report)
    assert as_json["workload"] == "chat"
    arms = {arm["name"]: arm for arm in as_json["arms"]}
    assert arms[decision.arm]["feedback"] == 1
    assert {a["name"]: a["feedback"] for a in rest["arms"]} == {
        name: arm["feedback"] for name, arm in arms.items()
    }


def test_batch_and_stream_feedback(service: RunningService, channel: grpc.Channel) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    ids = [
        stub.Decide(pb.DecideRequest(workload="chat"), metadata=auth(service.api_key)).decision_id
        for _ in range(6)
    ]
    batch = stub.RecordFeedbackBatch(
        pb.FeedbackBatchRequest(
            items=[
                pb.FeedbackRequest(decision_id=i, quality=0.5, cost_usd=0, latency_ms=10)
                for i in [*ids[:3], "no-such-decision"]
            ]
        ),
        metadata=auth(service.api_key),
    )
    assert (batch.accepted, batch.duplicate, batch.unknown_decision) == (3, 0, 1)
    requests = (
        pb.FeedbackRequest(decision_id=i, quality=0.7, cost_usd=0, latency_ms=10)
        for i in [*ids[2:], ids[3]]
    )
    acks = list(stub.StreamFeedback(requests, metadata=auth(service.api_key)))
    assert [a.decision_id for a in acks] == [*ids[2:], ids[3]]
    assert [a.status for a in acks] == [
        "duplicate",
        "accepted",
        "accepted",
        "accepted",
        "duplicate",
    ]


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("wrong-key", grpc.StatusCode.UNAUTHENTICATED),
        ("READ", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_auth_failures(
    service: RunningService, channel: grpc.Channel, key: str | None, code: grpc.StatusCode
) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    metadata = () if key is None else auth(service.read_key if key == "READ" else key)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(pb.DecideRequest(workload="chat"), metadata=metadata)
    assert raised.value.code() == code
    assert "key" in raised.value.details()


def test_error_codes(service: RunningService, channel: grpc.Channel) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    key = auth(service.api_key)
    cases = [
        (lambda: stub.Decide(pb.DecideRequest(workload="nope"), metadata=key), "NOT_FOUND"),
        (
            lambda: stub.RecordFeedback(
                pb.FeedbackRequest(decision_id="x", quality=2, cost_usd=0, latency_ms=1),
                metadata=key,
            ),
            "INVALID_ARGUMENT",
        ),
        (
            lambda: stub.RecordFeedback(
                pb.FeedbackRequest(decision_id="unknown", quality=1, cost_usd=0, latency_ms=1),
                metadata=key,
            ),
            "NOT_FOUND",
        ),
        (lambda: stub.GetReport(pb.GetReportRequest(workload="nope"), metadata=key), "NOT_FOUND"),
    ]
    for call, expected in cases:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code().name == expected, raised.value.details()


@pytest.mark.parametrize(
    ("field", "value"),
    [("quality", math.nan), ("cost_usd", math.inf), ("cost_usd", 1e155), ("latency_ms", 1e155)],
)
def test_feedback_numbers_are_bounded_like_rest(
    service: RunningService, channel: grpc.Channel, field: str, value: float
) -> None:
    """The REST API's validation, shared: non-finite and huge numbers are INVALID_ARGUMENT
    naming the field, and nothing is stored (the report stays readable)."""
    stub = pb_grpc.OptimizerStub(channel)
    key = auth(service.api_key)
    decision = stub.Decide(pb.DecideRequest(workload="chat"), metadata=key)
    values = {"quality": 0.5, "cost_usd": 0.01, "latency_ms": 10.0, field: value}
    with pytest.raises(grpc.RpcError) as raised:
        stub.RecordFeedback(
            pb.FeedbackRequest(decision_id=decision.decision_id, **values), metadata=key
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
    stub.GetReport(pb.GetReportRequest(workload="chat"), metadata=key)


def test_decide_context_must_be_finite(service: RunningService, channel: grpc.Channel) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    context = struct_pb2.Struct()
    context.update({"tier": "gold", "score": math.nan})
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(
            pb.DecideRequest(workload="chat", context=context), metadata=auth(service.api_key)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context" in (raised.value.details() or "")


def test_decide_context_is_checked_against_the_declared_features(
    service: RunningService, channel: grpc.Channel
) -> None:
    with service.client() as client:
        created = client.post(
            "/api/v1/workloads",
            json={
                "name": "grpc-ctx",
                "arms": [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}],
                "context_features": {"tier": ["free", "pro"]},
            },
        )
        assert created.status_code == 201, created.text
    stub = pb_grpc.OptimizerStub(channel)
    context = struct_pb2.Struct()
    context.update({"tier": "gold"})
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(
            pb.DecideRequest(workload="grpc-ctx", context=context), metadata=auth(service.api_key)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not one of its declared values: free, pro" in (raised.value.details() or "")
    context.update({"tier": "pro"})
    decision = stub.Decide(
        pb.DecideRequest(workload="grpc-ctx", context=context), metadata=auth(service.api_key)
    )
    assert decision.arm in {"a", "b"}


def test_sessions_decide_and_session_feedback(
    service: RunningService, channel: grpc.Channel
) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    key = auth(service.api_key)
    ids = {
        stub.Decide(
            pb.DecideRequest(workload="chat", session_id="grpc-session"), metadata=key
        ).decision_id
        for _ in range(3)
    }
    answer = stub.RecordSessionFeedback(
        pb.SessionFeedbackRequest(
            session_id="grpc-session", quality=0.5, cost_usd=0.03, latency_ms=300
        ),
        metadata=key,
    )
    assert (answer.accepted, answer.duplicate) == (3, 0)
    assert {item.decision_id for item in answer.items} == ids
    for request, code in (
        (pb.SessionFeedbackRequest(session_id="nobody", quality=0.5), "NOT_FOUND"),
        (pb.SessionFeedbackRequest(session_id="x" * 129, quality=0.5), "INVALID_ARGUMENT"),
        (pb.SessionFeedbackRequest(session_id="s", quality=2.0), "INVALID_ARGUMENT"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            stub.RecordSessionFeedback(request, metadata=key)
        assert raised.value.code().name == code
    with pytest.raises(grpc.RpcError) as raised:
        stub.Decide(pb.DecideRequest(workload="chat", session_id="\u202e"), metadata=key)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_report_pacing_and_evaluation_like_rest(
    service: RunningService, channel: grpc.Channel
) -> None:
    with service.client() as client:
        created = client.post(
            "/api/v1/workloads",
            json={
                "name": "grpc-budget",
                "arms": [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}],
                "budget": {"daily_usd": 3},
                "promotion": {"require_evaluation": True},
            },
        )
        assert created.status_code == 201, created.text
        rest = client.get("/api/v1/workloads/grpc-budget/report").json()
    stub = pb_grpc.OptimizerStub(channel)
    answer = stub.GetReport(
        pb.GetReportRequest(workload="grpc-budget"), metadata=auth(service.read_key)
    )
    report = json_format.MessageToDict(answer.report)
    planned = report["pacing"].pop("planned_usd")  # the plan grows with the time of day
    assert planned == pytest.approx(rest["pacing"].pop("planned_usd"), rel=1e-3)
    assert report["pacing"] == rest["pacing"]
    assert report["pacing"]["daily_usd"] == 3
    assert report["evaluation"] == rest["evaluation"]
    assert report["evaluation"]["require_evaluation"] is True
    assert report["evaluation"]["latest"] is None


def test_grpc_metrics_are_exported(service: RunningService, channel: grpc.Channel) -> None:
    """Every RPC is counted and timed, though each method's handler is wrapped only once."""

    def samples() -> dict[str, float]:
        text = httpx.get(service.metrics_url, timeout=5).text
        return {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith("grpc_server_")
        }

    ok = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Decide"}'
    missing = 'grpc_server_handled_total{grpc_code="NotFound",grpc_method="Decide"}'
    undecodable = 'grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="Decide"}'
    timed = 'grpc_server_handling_seconds_count{grpc_method="Decide"}'
    checked = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Check"}'
    before = samples()
    stub = pb_grpc.OptimizerStub(channel)
    for _ in range(3):
        stub.Decide(pb.DecideRequest(workload="chat"), metadata=auth(service.api_key))
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            stub.Decide(pb.DecideRequest(workload="nope"), metadata=auth(service.api_key))
    garbage = channel.unary_unary(
        "/llm_optimizer.v1.Optimizer/Decide",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.DecideResponse.FromString,
    )
    with pytest.raises(grpc.RpcError):  # the decoding wrapper's INVALID_ARGUMENT is counted
        garbage(b"\xff\xff\xff\xff\x0f", metadata=auth(service.api_key))
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    after = samples()
    assert after[ok] - before.get(ok, 0) == 3
    assert after[missing] - before.get(missing, 0) == 2
    assert after[undecodable] - before.get(undecodable, 0) == 1
    assert after[timed] - before.get(timed, 0) == 6
    assert after[checked] - before.get(checked, 0) == 1  # the standard services' calls too
    # pre-initialised like go-grpc-prometheus: a series per code before the first such call
    assert 'grpc_server_handled_total{grpc_code="DataLoss",grpc_method="GetReport"}' in after


def test_health_command_checks_grpc(service: RunningService) -> None:
    env = {
        "LLM_OPTIMIZER_DATA_DIR": str(service.data_dir),
        "LLM_OPTIMIZER_SERVER__HTTP_PORT": str(service.http_port),
        "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(service.grpc_port),
    }
    healthy = CliRunner().invoke(app, ["health", "--json"], env=env)
    assert healthy.exit_code == 0, healthy.output
    check = json.loads(healthy.stdout)["checks"]["grpc"]
    assert check == {
        "status": "ok",
        "detail": f"127.0.0.1:{service.grpc_port} grpc.health.v1 SERVING",
    }
    closed = {**env, "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(free_port())}
    down = CliRunner().invoke(app, ["health", "--json", "--timeout", "1"], env=closed)
    assert down.exit_code == 1, down.output
    result = json.loads(down.stdout)
    assert result["status"] == "unhealthy"
    assert result["checks"]["grpc"]["status"] == "unhealthy"
    assert result["checks"]["http"]["status"] == "ok"


def test_a_busy_grpc_port_is_one_clear_error(service: RunningService, tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, server={"host": "127.0.0.1", "grpc_port": service.grpc_port}
    )
    server = GrpcServer(settings, Runtime(settings))
    with pytest.raises(OSError, match="LLM_OPTIMIZER_SERVER__GRPC_PORT") as raised:
        asyncio.run(server.start())
    assert f"127.0.0.1:{service.grpc_port}" in str(raised.value)


def test_evaluate_a_candidate_like_rest(service: RunningService, channel: grpc.Channel) -> None:
    stub = pb_grpc.OptimizerStub(channel)
    key = auth(service.api_key)
    body = {
        "name": "ope",
        "arms": [{"name": "cheap", "model": "small"}, {"name": "smart", "model": "large"}],
        "strategy": "epsilon_greedy",
        "strategy_params": {"epsilon": 1.0},  # each arm with probability 1/2
    }
    with service.client() as client:
        assert client.post("/api/v1/workloads", json=body).status_code == 201
    quality = {"cheap": 0.4, "smart": 0.8}
    for _ in range(100):
        decision = stub.Decide(pb.DecideRequest(workload="ope"), metadata=key)
        stub.RecordFeedback(
            pb.FeedbackRequest(
                decision_id=decision.decision_id,
                quality=quality[decision.arm],
                cost_usd=0.0,
                latency_ms=1.0,
            ),
            metadata=key,
        )
    candidate = struct_pb2.Struct()
    candidate.update({"arm": "smart"})
    answer = stub.Evaluate(
        pb.EvaluateRequest(workload="ope", candidate=candidate, limit=1000),
        metadata=auth(service.read_key),
    )
    evaluation = json_format.MessageToDict(answer.evaluation)
    assert evaluation["candidate"] == {"smart": 1.0}
    assert evaluation["snips"]["value"] == pytest.approx(0.8)
    assert evaluation["verdict"] == "better"
    # stored (a read key's too) and shown by GetReport, as by the REST report
    report = stub.GetReport(pb.GetReportRequest(workload="ope"), metadata=key)
    latest = json_format.MessageToDict(report.report)["evaluation"]["latest"]
    assert latest["candidate"] == {"arm": "smart"}
    assert latest["description"] == "arm smart fixed (what promoting it would do)"
    assert (latest["verdict"], latest["source"], latest["limit"]) == ("better", "evaluate", 1000)
    assert latest["dr"]["value"] == pytest.approx(evaluation["dr"]["value"])
    assert latest["evaluated_by"] == ApiKey(digest(service.read_key), frozenset()).key_id
    with service.client() as client:
        rest = client.get("/api/v1/workloads/ope/report").json()["evaluation"]["latest"]
    assert rest["evaluated_at"] == latest["evaluated_at"]
    unknown = struct_pb2.Struct()
    unknown.update({"arm": "no-such-arm"})
    bad = struct_pb2.Struct()
    bad.update({"strategy": "ucb", "strategy_params": {"c": -1}})
    extra = struct_pb2.Struct()
    extra.update({"arm": "smart", "surprise": 1})
    for request, code in (
        (pb.EvaluateRequest(workload="ope", candidate=unknown), "FAILED_PRECONDITION"),
        (pb.EvaluateRequest(workload="ope", candidate=bad), "INVALID_ARGUMENT"),
        (pb.EvaluateRequest(workload="ope", candidate=extra), "INVALID_ARGUMENT"),
        (pb.EvaluateRequest(workload="ope", candidate=candidate, limit=5), "INVALID_ARGUMENT"),
        (pb.EvaluateRequest(workload="nope", candidate=unknown), "NOT_FOUND"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            stub.Evaluate(request, metadata=key)
        assert raised.value.code().name == code, raised.value.details()


def test_health_goes_not_serving_when_shutdown_begins(service: RunningService) -> None:
    """Last in this module (it stops the service): on SIGTERM health says NOT_SERVING at once,
    while server.shutdown_delay keeps the listeners open for load balancers to notice."""
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as opened:
        stub = health_pb2_grpc.HealthStub(opened)
        request = health_pb2.HealthCheckRequest(service="")
        assert stub.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.5
        status = None
        while time.monotonic() < deadline:
            status = stub.Check(request, timeout=5).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.05)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert service.process.wait(30) == 0
