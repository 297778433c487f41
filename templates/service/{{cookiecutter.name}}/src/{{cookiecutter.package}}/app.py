"""The FastAPI application: health endpoints and version; request metrics by route template."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Match

from {{ cookiecutter.package }} import __version__, metrics
from {{ cookiecutter.package }}.settings import Settings

log = structlog.get_logger(__name__)


def _route(request: Request) -> str:
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; ``ready`` flips on once startup has finished."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ready = True
        log.info("started", version=__version__, environment=settings.environment)
        yield
        app.state.ready = False
        app.state.shutting_down = True
        log.info("stopping")

    app = FastAPI(title="{{ cookiecutter.name }}", version=__version__, lifespan=lifespan)
    app.state.ready = False
    app.state.shutting_down = False

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route(request)
        metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.get("/health/live")
    async def live(request: Request) -> JSONResponse:
        """200 while the process runs; 503 once shutdown has begun."""
        if request.app.state.shutting_down:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        """200 once startup has finished; 503 before that and during shutdown."""
        if not request.app.state.ready:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/version")
    async def version() -> dict[str, str]:
        """The installed package's version."""
        return {"version": __version__}

    return app
