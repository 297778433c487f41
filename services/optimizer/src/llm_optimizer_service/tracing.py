"""OpenTelemetry tracing: spans for HTTP requests, gRPC calls, database statements and Kafka
messages, exported over OTLP/HTTP when ``LLM_OPTIMIZER_OTEL__ENDPOINT`` is set; off otherwise.

One entry point, :func:`setup_tracing`, called once by the app factory. It uses the upstream
instrumentations rather than hand-made spans:

- HTTP: ``FastAPIInstrumentor.instrument_app`` (one server span per request, named by route);
- database: ``SQLAlchemyInstrumentor`` on the engines passed in (one span per statement);
- gRPC: ``GrpcAioInstrumentorServer`` (patches ``grpc.aio.server``: servers created after this
  call get a server span per call);
- Kafka: ``AIOKafkaInstrumentor`` (patches aiokafka's producer send and consumer fetch).

The standard ``OTEL_*`` variables still tune the SDK (e.g. ``OTEL_BSP_SCHEDULE_DELAY``,
``OTEL_TRACES_SAMPLER``); the endpoint and the service name come from our settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from llm_optimizer_service import __version__
from llm_optimizer_service.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
# Probes are polled every few seconds by orchestrators: spans for them are noise.
EXCLUDED_URLS = "health/live,health/ready,/health$"


def traces_endpoint(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (``http://collector:4318``)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def setup_tracing(
    settings: Settings, app: FastAPI | None = None, *, engines: Iterable[Engine] = ()
) -> TracerProvider | None:
    """Export spans to ``settings.otel.endpoint``; a no-op returning None when it is unset.

    Call it once, from the app factory, before the gRPC server and Kafka clients are created.
    """
    endpoint = settings.otel.endpoint
    if not endpoint:
        return None
    # Imported here: a service without tracing does not pay for loading the SDK.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel.service_name,
                "service.version": __version__,
                "deployment.environment": settings.environment,
            }
        )
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(traces_endpoint(endpoint))))
    trace.set_tracer_provider(provider)
    if app is not None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls=EXCLUDED_URLS,
            exclude_spans=["receive", "send"],  # per-message ASGI spans: noise
        )
    engines = list(engines)
    if engines:
        # The instrumentation declares sqlalchemy < 2.1; the event API it uses is unchanged in
        # 2.1 (tests/monitoring/test_monitoring_tracing.py receives the statement spans). It
        # also wraps create_async_engine, hence greenlet among the dependencies.
        SQLAlchemyInstrumentor().instrument(
            engines=engines, tracer_provider=provider, skip_dep_check=True
        )
    GrpcAioInstrumentorServer().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    log.info("tracing on", extra={"otlp_endpoint": traces_endpoint(endpoint)})
    return provider
