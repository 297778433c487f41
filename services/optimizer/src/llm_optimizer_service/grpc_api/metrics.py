"""The contract's gRPC server metrics, as go-grpc-prometheus names them:
``grpc_server_handled_total{grpc_method,grpc_code}`` (counter; codes by their Go names: OK,
InvalidArgument, NotFound, Unavailable, ...) and ``grpc_server_handling_seconds{grpc_method}``
(histogram), recorded by :func:`instrument` for every RPC the server handles.

Like go-grpc-prometheus' ``InitializeMetrics``, every served method starts with a zero series per
code, so dashboards and alert ratios exist before the first call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from llm_optimizer_service.metrics import LATENCY_BUCKETS

HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by method and status code.",
    ["grpc_method", "grpc_code"],
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC until the server finished it.",
    ["grpc_method"],
    buckets=LATENCY_BUCKETS,
)

# Go's spelling of each code (go-grpc-prometheus labels with code.String()).
_GO_NAMES = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


def code_name(code: grpc.StatusCode) -> str:
    return _GO_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


def initialize(methods: Iterable[str]) -> None:
    for method in methods:
        HANDLING.labels(grpc_method=method)
        for code in grpc.StatusCode:
            HANDLED.labels(grpc_method=method, grpc_code=code_name(code))


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1] or full


def _code(context: Any, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code_name(code)
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        return "Canceled"
    return "Unknown"  # an exception the servicer did not turn into a status


def instrument(full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` timed and counted by the status code it ends with. Applied once per method
    when the server registers it (``server.py``), so a call pays no lookups but the wrapper."""
    method = _method_name(full_method)
    handled_ok = HANDLED.labels(grpc_method=method, grpc_code="OK")
    timer = HANDLING.labels(grpc_method=method)

    def record(start: float, context: Any, error: BaseException | None) -> None:
        timer.observe(time.perf_counter() - start)
        code = _code(context, error)
        (handled_ok if code == "OK" else HANDLED.labels(method, code)).inc()

    behaviour: Any
    if handler.response_streaming:
        streamed = handler.stream_stream or handler.unary_stream

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            start, error = time.perf_counter(), None
            try:
                async for reply in streamed(request, context):
                    yield reply
            except BaseException as exc:
                error = exc
                raise
            finally:
                record(start, context, error)

        behaviour = streaming
        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
    else:
        called = handler.stream_unary or handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            start, error = time.perf_counter(), None
            try:
                return await called(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                record(start, context, error)

        behaviour = unary
        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
    return factory(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
