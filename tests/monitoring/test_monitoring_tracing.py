"""Tracing: spans of real work arrive over OTLP/HTTP at a local receiver (a small HTTP server
that decodes the protobuf export request with opentelemetry-proto), and nothing is set up when
LLM_OPTIMIZER_OTEL__ENDPOINT is unset."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from llm_optimizer_service.settings import OtelSettings, Settings
from llm_optimizer_service.tracing import setup_tracing, traces_endpoint
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ops.monitoring import stack
from tests._support.service import RunningService
from tests._support.tools import free_port, require_tool
from tests.monitoring.traffic import drive_traffic


@dataclass
class ReceivedSpan:
    service: str
    name: str
    kind: int
    attributes: dict[str, Any]


@dataclass
class OtlpReceiver:
    """What a local OTLP/HTTP endpoint received."""

    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(
        self, what: str, match: Callable[[ReceivedSpan], bool], timeout: float = 30
    ) -> ReceivedSpan:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [span for span in self.spans if match(span)]
            if found:
                return found[0]
            time.sleep(0.1)
        with self.lock:
            names = sorted({(s.service, s.name) for s in self.spans})
        raise AssertionError(f"no span for {what} within {timeout}s; received {names}")


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP (protobuf) traces endpoint on a free 127.0.0.1 port."""
    port = free_port()
    receiver = OtlpReceiver(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with receiver.lock:
                receiver.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(ReceivedSpan(
                                str(resource.get("service.name")), span.name, span.kind,
                                {a.key: _value(a.value) for a in span.attributes},
                            ))  # fmt: skip
            payload = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def test_http_and_database_spans_of_a_real_request_arrive_over_otlp(
    otlp_receiver: OtlpReceiver, service_factory: Callable[..., RunningService]
) -> None:
    service = service_factory(
        env={"LLM_OPTIMIZER_OTEL__ENDPOINT": otlp_receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    )
    drive_traffic(service, workload="traced")
    with service.client() as client:
        given = client.post("/api/v1/workloads/traced/decide", headers={"X-Request-ID": "rid-42"})
        generated = client.post("/api/v1/workloads/traced/decide").headers["x-request-id"]
    assert given.headers["x-request-id"] == "rid-42"
    decide = otlp_receiver.wait_for(
        "the decide request",
        lambda s: (
            s.kind == Span.SPAN_KIND_SERVER and s.name == "POST /api/v1/workloads/{name}/decide"
        ),
    )
    # The server span carries the request id the answer (and the logs) carry, given or generated.
    for request_id in ("rid-42", generated):
        otlp_receiver.wait_for(f"the server span of request {request_id}", _server_span(request_id))
    assert decide.service == "llm-optimizer-service"
    assert decide.attributes.get("http.route", decide.attributes.get("url.path")) in (
        "/api/v1/workloads/{name}/decide", "/api/v1/workloads/traced/decide")  # fmt: skip
    statement = otlp_receiver.wait_for(
        "a database statement",
        lambda s: s.kind == Span.SPAN_KIND_CLIENT and s.attributes.get("db.system") == "sqlite",
    )
    assert statement.service == "llm-optimizer-service"
    assert set(otlp_receiver.paths) == {"/v1/traces"}
    # Probes are excluded: they would drown real traffic.
    assert not any("health/ready" in span.name for span in otlp_receiver.spans)


def _server_span(request_id: str) -> Callable[[ReceivedSpan], bool]:
    return lambda s: (
        s.kind == Span.SPAN_KIND_SERVER and s.attributes.get("request_id") == request_id
    )


GRPC_AND_KAFKA = textwrap.dedent(
    """
    import asyncio, os
    import grpc
    from aiokafka import AIOKafkaProducer
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from llm_optimizer_service.settings import OtelSettings, Settings
    from llm_optimizer_service.tracing import setup_tracing

    provider = setup_tracing(Settings())
    assert provider is not None

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await server.stop(None)
        producer = AIOKafkaProducer(bootstrap_servers=os.environ["BROKER"])
        await producer.start()
        try:
            await producer.send_and_wait("llm-optimizer.events", b"traced")
        finally:
            await producer.stop()

    asyncio.run(main())
    provider.shutdown()
    """
)


@pytest.mark.kafka
def test_grpc_and_kafka_spans_arrive_over_otlp(otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    """setup_tracing instruments gRPC servers and aiokafka clients created after it (here in a
    separate process, so the global patches stay out of the test process)."""
    broker_port = free_port()
    broker = stack.start(
        "tansu",
        [str(require_tool("tansu")), "broker",
         "--listener-url", f"tcp://127.0.0.1:{broker_port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{broker_port}",
         "--storage-engine", "memory://tansu/"],
        log_dir=tmp_path, echo=False,
    )  # fmt: skip
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")},
            "LLM_OPTIMIZER_OTEL__ENDPOINT": otlp_receiver.url,
            "BROKER": f"127.0.0.1:{broker_port}",
        }
        result = subprocess.run(
            [sys.executable, "-c", GRPC_AND_KAFKA], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr + broker.log_tail()
    finally:
        broker.stop()
    grpc_span = otlp_receiver.wait_for(
        "the gRPC call", lambda s: s.name == "/grpc.health.v1.Health/Check"
        and s.kind == Span.SPAN_KIND_SERVER)  # fmt: skip
    assert grpc_span.attributes.get("rpc.system") == "grpc"
    kafka_span = otlp_receiver.wait_for(
        "the Kafka send", lambda s: s.kind == Span.SPAN_KIND_PRODUCER
    )
    assert "llm-optimizer.events" in kafka_span.name


def test_tracing_is_off_without_an_endpoint() -> None:
    app = FastAPI()
    assert setup_tracing(Settings(otel=OtelSettings(endpoint=None)), app) is None
    assert app.user_middleware == []


def test_the_traces_path_is_added_once() -> None:
    assert traces_endpoint("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_endpoint("http://collector:4318/v1/traces/") == "http://collector:4318/v1/traces"
