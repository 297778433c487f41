"""The FastAPI application: probes, version, the /api/v1 routes, errors, middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from llm_optimizer_service import __version__, tracing
from llm_optimizer_service import health as health_checks
from llm_optimizer_service.api import errors, routes
from llm_optimizer_service.api import schemas as s
from llm_optimizer_service.api.deps import document_bearer_auth
from llm_optimizer_service.api.middleware import RequestContextMiddleware
from llm_optimizer_service.runtime import LifecycleHooks, Runtime
from llm_optimizer_service.settings import Settings

PROBE_RESPONSES: dict[int | str, dict[str, object]] = {503: {"model": s.ProbeOut}}


def operation_id(route: APIRoute) -> str:
    """Each operation's OpenAPI operationId is its handler's name (``decide``,
    ``record_feedback``): stable and readable in generated clients."""
    return route.name


def edge_settings(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """:class:`RequestContextMiddleware`'s arguments, for the app and for decide's hot path
    (``hot_path.py``), which runs its own instance of the middleware."""
    return {
        "max_body": settings.server.max_request_bytes,
        "keys": app.state.runtime.keys,
        "auth_prefix": routes.router.prefix,
    }


def create_app(settings: Settings, hooks: LifecycleHooks | None = None) -> FastAPI:
    """The app; its lifespan starts and stops the :class:`Runtime` (database, loops)."""
    runtime = Runtime(settings, hooks)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="LLM Auto Optimizer",
        version=__version__,
        description="Decides which LLM configuration each request should use and learns from "
        "feedback. Authenticate /api/v1 with `Authorization: Bearer <api key>`.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        responses=errors.responses(*errors.EDGE_STATUSES),
    )
    app.state.runtime = runtime
    tracing.setup_tracing(settings, app, engines=[runtime.engine])
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, **edge_settings(app, settings))
    routes.route_decide_first(app)
    app.include_router(routes.router)
    document_bearer_auth(app)

    def probe(ok: bool, failing: str) -> JSONResponse:
        if runtime.draining:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if not ok:
            return JSONResponse({"status": failing}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/health/live", response_model=s.ProbeOut, responses=PROBE_RESPONSES, tags=["health"])
    async def health_live() -> JSONResponse:
        return probe(True, "ok")

    @app.get("/health/ready", response_model=s.ProbeOut, responses=PROBE_RESPONSES, tags=["health"])
    async def health_ready() -> JSONResponse:
        return probe(runtime.ready, "starting")

    @app.get(
        "/health",
        response_model=s.HealthOut,
        responses={503: {"model": s.HealthOut}},
        tags=["health"],
    )
    async def health() -> JSONResponse:
        parts = await health_checks.components(runtime)
        status = health_checks.overall(runtime, parts)
        body = s.HealthOut(
            status=status,
            version=__version__,
            components=dict(parts),
            quarantined=runtime.quarantined,
        )
        return JSONResponse(body.model_dump(), status_code=503 if status == "down" else 200)

    @app.get("/version", tags=["health"])
    async def get_version() -> s.VersionOut:
        return s.VersionOut(
            version=__version__, git_sha=settings.git_sha, build_date=settings.build_date
        )

    return app
