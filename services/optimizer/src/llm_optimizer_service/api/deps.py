"""Request dependencies: the runtime and the caller's API key with its scopes.

The key is read from the ``Authorization`` header directly (one flat dependency instead of
FastAPI's nested ``HTTPBearer`` — decide is the hot path); the OpenAPI document still declares
the bearer scheme on every /api/v1 operation (see :func:`document_bearer_auth`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi import FastAPI, Request

from llm_optimizer_service.api.errors import ApiError
from llm_optimizer_service.api.openapi_links import add_links
from llm_optimizer_service.auth import ANONYMOUS, Principal, Scope
from llm_optimizer_service.ratelimit import over_quota_message
from llm_optimizer_service.runtime import Runtime

SCHEME = "ApiKey"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(request: Request) -> Principal:
        runtime: Runtime = request.app.state.runtime
        if not runtime.keys.enabled:
            return ANONYMOUS  # development without keys (production refuses to start so)
        header = request.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        presented = presented.strip()
        if kind.lower() != "bearer" or not presented:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key; send 'Authorization: Bearer <key>'",
                _CHALLENGE,
            )
        principal = runtime.keys.authenticate(presented)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid API key", _CHALLENGE)
        structlog.contextvars.bind_contextvars(key_id=principal.key_id)
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the '{scope}' scope")
        if runtime.rate_limiter is not None:
            retry = await runtime.rate_limiter.retry_after(principal.key_id)
            if retry is not None:
                raise ApiError(
                    429,
                    "rate_limited",
                    over_quota_message(runtime.rate_limiter.per_minute, retry),
                    {"Retry-After": str(retry)},
                )
        return principal

    return dependency


reader = require(Scope.READ)
writer = require(Scope.WRITE)
admin = require(Scope.ADMIN)


def document_bearer_auth(app: FastAPI, prefix: str = "/api/v1") -> None:
    """Declare the bearer scheme in the OpenAPI document for every operation under ``prefix``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key from the keys file",
        }
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(prefix):
                for operation in operations.values():
                    operation["security"] = [{SCHEME: []}]
        add_links(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
