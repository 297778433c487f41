"""Request dependencies: the runtime, and the caller's scopes and quota.

The API key itself is checked by the middleware before the body is read (``middleware.py``),
which leaves the principal in the request's state; the OpenAPI document declares the bearer
scheme on every /api/v1 operation (see :func:`document_bearer_auth`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request

from llm_optimizer_service.api.errors import ApiError
from llm_optimizer_service.api.openapi_links import add_links
from llm_optimizer_service.auth import ANONYMOUS, Principal, Scope
from llm_optimizer_service.ratelimit import over_quota_message
from llm_optimizer_service.runtime import Runtime

SCHEME = "ApiKey"


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def authorize(request: Request, scope: Scope) -> Principal:
    """The caller (authenticated by the middleware, before the body was read) must hold
    ``scope`` and be within its quota (403 / 429 otherwise)."""
    runtime: Runtime = request.app.state.runtime
    principal: Principal = request.state.principal
    if scope not in principal.scopes:
        raise ApiError(403, "forbidden", f"this API key lacks the '{scope}' scope")
    if runtime.rate_limiter is not None and principal is not ANONYMOUS:
        retry = await runtime.rate_limiter.retry_after(principal.key_id)
        if retry is not None:
            raise ApiError(
                429,
                "rate_limited",
                over_quota_message(runtime.rate_limiter.per_minute, retry),
                {"Retry-After": str(retry)},
            )
    return principal


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: :func:`authorize` for ``scope``."""

    async def dependency(request: Request) -> Principal:
        return await authorize(request, scope)

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
