"""Request dependencies: the runtime and the caller's API key with its scopes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llm_optimizer_service.api.errors import ApiError
from llm_optimizer_service.auth import ANONYMOUS, Principal, Scope
from llm_optimizer_service.runtime import Runtime

bearer = HTTPBearer(auto_error=False, description="an API key from the keys file")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Principal:
        runtime: Runtime = request.app.state.runtime
        if not runtime.keys.enabled:
            return ANONYMOUS  # development without keys (production refuses to start so)
        if credentials is None or not credentials.credentials:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key; send 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        principal = runtime.keys.authenticate(credentials.credentials)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid API key", {"WWW-Authenticate": "Bearer"})
        structlog.contextvars.bind_contextvars(key_id=principal.key_id)
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the '{scope}' scope")
        return principal

    return dependency


reader = require(Scope.READ)
writer = require(Scope.WRITE)
admin = require(Scope.ADMIN)
