"""Pure ASGI middleware (cheap on the hot path): request id, access log, HTTP metrics, and the
edge checks, in this order — the API key (401), then the body: its size (413), its content type
(415) and the numbers JSON can carry but the API never takes (422, see ``body_checks.py``).

A body is read whole before the app runs (every route reads it whole anyway), so a chunked body
over the limit is a 413 like one with a Content-Length, and a body the service refuses is drained
before the answer: closing a socket with unread data makes the kernel reset the connection, which
can cut the 413 short on a keep-alive connection.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_optimizer_service import metrics
from llm_optimizer_service.api.body_checks import body_problems, is_json_content_type
from llm_optimizer_service.auth import ANONYMOUS, KeyRing, UnauthenticatedError
from llm_optimizer_service.logging_setup import LineLogger

log = LineLogger("llm_optimizer_service.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_QUIET = frozenset({"/health/live", "/health/ready"})
# The methods counted by name in the HTTP metrics; any other is counted as "other", so a client
# inventing methods cannot add series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# How much of an oversized body is read and discarded before the 413, so the connection closes
# cleanly; a larger one is cut (the client gets a reset instead of the answer).
DRAIN_LIMIT = 16 * 1024 * 1024


class BodyTooLargeError(Exception):
    pass


class ClientGoneError(Exception):
    pass


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _too_large_body(limit: int) -> bytes:
    return _error_body(
        "request_too_large",
        f"request body larger than {limit} bytes; send less (server.max_request_bytes)",
    )


def _unsupported_type_body(given: str | None) -> bytes:
    what = f"Content-Type {given!r}" if given else "a body without a Content-Type"
    return _error_body(
        "unsupported_media_type",
        f"{what} is not accepted; send the body as JSON with 'Content-Type: application/json'",
    )


async def _drain(receive: Receive, received: int) -> None:
    """Read and discard the rest of a refused body, up to DRAIN_LIMIT bytes in all."""
    more = True
    while more and received <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += len(message.get("body", b""))
        more = message.get("more_body", False)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGoneError
        chunk = message.get("body", b"")
        received += len(chunk)
        more = message.get("more_body", False)
        if received > limit:
            if more:
                await _drain(receive, received)
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the real channel (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class RequestContextMiddleware:
    """``keys`` authenticate every request under ``auth_prefix`` before its body is read: a
    caller without a valid key learns nothing about what its body would have made of it, and
    costs no parsing. The principal is left in the request's state for the routes' scope and
    quota checks (``deps.py``)."""

    def __init__(self, app: ASGIApp, max_body: int, keys: KeyRing, auth_prefix: str) -> None:
        self.app = app
        self.max_body = max_body
        self.keys = keys
        self.auth_prefix = auth_prefix.rstrip("/") + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        # 32 random hex digits, as uuid4().hex gave, at a fraction of its cost
        request_id = given if _REQUEST_ID.match(given) else os.urandom(16).hex()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # The request's server span (when tracing is on) carries the id the logs and the
        # X-Request-ID answer carry, so a trace is found by it; a no-op without tracing.
        trace.get_current_span().set_attribute("request_id", request_id)
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        declared = headers.get(b"content-length")
        has_body = (declared is not None and declared != b"0") or b"transfer-encoding" in headers
        # with 100-continue a refused body was never sent: nothing to drain
        drain = has_body and b"expect" not in headers
        try:
            if scope["path"].startswith(self.auth_prefix):
                try:
                    principal = self.keys.principal(
                        headers.get(b"authorization", b"").decode("latin-1"),
                        "'Authorization: Bearer <key>'",
                    )
                except UnauthenticatedError as exc:
                    if drain:
                        await _drain(receive, 0)
                    body = _error_body("unauthorized", str(exc))
                    await _send_json(send_wrapper, 401, body, headers=[_CHALLENGE])
                    return
                scope.setdefault("state", {})["principal"] = principal
                if principal is not ANONYMOUS:
                    structlog.contextvars.bind_contextvars(key_id=principal.key_id)
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                if drain:
                    await _drain(receive, 0)
                raise BodyTooLargeError
            if has_body:
                body = await _read_body(receive, self.max_body)
                if body:
                    content_type = headers.get(b"content-type", b"").decode("latin-1") or None
                    if not is_json_content_type(content_type):
                        await _send_json(send_wrapper, 415, _unsupported_type_body(content_type))
                        return
                    problems = body_problems(body)
                    if problems:
                        await _send_json(
                            send_wrapper, 422, json.dumps({"detail": problems}).encode()
                        )
                        return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_wrapper)
        except BodyTooLargeError:
            await _send_json(send_wrapper, 413, _too_large_body(self.max_body), headers=[_CLOSE])
        except ClientGoneError:
            status = 499  # nginx's "client closed request": nothing was answered
        finally:
            elapsed = time.perf_counter() - start
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            _request_series(method, template, status).inc()
            _duration_series(method, template).observe(elapsed)
            if template not in _QUIET or status >= 400:
                log.info(
                    "request",
                    method=method,
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                )
            structlog.contextvars.clear_contextvars()


# The labelled children of the HTTP metrics, looked up once per label set: ``.labels()`` costs
# more than the increment. The label sets are bounded (methods, route templates, statuses).
_REQUESTS: dict[tuple[str, str, int], Any] = {}
_DURATIONS: dict[tuple[str, str], Any] = {}


def _request_series(method: str, route: str, status: int) -> Any:
    key = (method, route, status)
    series = _REQUESTS.get(key)
    if series is None:
        series = metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status))
        _REQUESTS[key] = series
    return series


def _duration_series(method: str, route: str) -> Any:
    key = (method, route)
    series = _DURATIONS.get(key)
    if series is None:
        series = metrics.HTTP_DURATION.labels(method=method, route=route)
        _DURATIONS[key] = series
    return series


_CHALLENGE = (b"www-authenticate", b"Bearer")
_CLOSE = (b"connection", b"close")


async def _send_json(
    send: Send, status: int, body: bytes, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    sent = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": body})
