"""decide and feedback served straight from the ASGI server, ahead of FastAPI's middleware stack.

Between the server and a route FastAPI runs its error and telemetry middleware, the exception
middleware, two exit stacks, the router and the request/response wrapper. None of them does
anything for decide or feedback: they need no dependency with cleanup, and their errors have
handlers of the app's own. Without them decide's CPU per request fell from 257-318 to 180-205 us
in the benchmark (docs/service.md, "decide's hot path ahead of FastAPI"); feedback's, see
"Feedback" there.

:func:`wrap` puts one dispatch in front of the app. ``POST /api/v1/workloads/{name}/decide`` and
``POST /api/v1/feedback`` each go through the same
:class:`~llm_optimizer_service.api.middleware.RequestContextMiddleware` as every request
(request id, API key, body checks, HTTP metrics, access line), with the same settings, to the
handler their FastAPI route runs (:func:`~llm_optimizer_service.api.routes.decide_by_hand`,
:func:`~llm_optimizer_service.api.routes.feedback_by_hand`); an exception it raises is answered
by the app's own handler for it (``errors.install``). Every other request, and these too when
tracing is on (FastAPI's instrumentation makes the request's server span) or the app is mounted
under a root path, goes to the app untouched. ``tests/service/test_routes_by_hand.py`` sends
the same requests, good and bad, through the hot path, the route and FastAPI's generic handler
and requires the same answers.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_optimizer_service.api import routes
from llm_optimizer_service.api.app import edge_settings
from llm_optimizer_service.api.middleware import RequestContextMiddleware
from llm_optimizer_service.settings import Settings


class _Endpoint:
    """One route as a bare ASGI app: what Starlette's router and FastAPI's request wrapper would
    set in the scope, the route's own handler, and the app's exception handlers."""

    def __init__(self, app: FastAPI, route: APIRoute, by_hand: routes.ByHand) -> None:
        self.app = app
        self.route = route
        self.by_hand = by_hand

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app
        scope["route"] = self.route  # the HTTP metrics' route label, as the router sets it
        scope["endpoint"] = self.route.endpoint
        request = Request(scope, receive, send)
        try:
            response = await self.by_hand(request, self.route)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Any:
        """The app's handler for ``exc``: the nearest class in its MRO, as Starlette looks up
        (``errors.install`` registers handlers by class only, ``Exception`` last)."""
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None


class _Dispatch:
    def __init__(self, app: FastAPI, hot: list[tuple[re.Pattern[str], ASGIApp]]) -> None:
        self.app = app
        self.state = app.state  # the app's (its runtime), for whoever holds the wrapper
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            for path, endpoint in self.hot:
                match = path.match(scope["path"])
                if match is not None:
                    scope["path_params"] = match.groupdict()
                    await endpoint(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def app_route(app: FastAPI, path: str) -> APIRoute:
    """The ``POST`` route of ``path`` (under the /api/v1 prefix): the app's own if it has one
    (for decide, the one ``routes.route_decide_first`` adds ahead of the router), else the
    /api/v1 router's (FastAPI keeps an included router's routes in that router)."""
    path = routes.router.prefix + path
    for route in [*app.router.routes, *routes.router.routes]:
        if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ()):
            return route
    raise LookupError(f"the app has no route POST {path}")


# The routes served ahead of FastAPI, each by the handler its route runs.
HOT: tuple[tuple[str, routes.ByHand], ...] = (
    (routes.DECIDE_PATH, routes.decide_by_hand),
    (routes.FEEDBACK_PATH, routes.feedback_by_hand),
)


def wrap(app: FastAPI, settings: Settings) -> ASGIApp:
    """The app with the hot path in front of it; the app itself when tracing is on."""
    if settings.otel.endpoint:
        return app
    edge = edge_settings(app, settings)
    hot: list[tuple[re.Pattern[str], ASGIApp]] = []
    for path, by_hand in HOT:
        route = app_route(app, path)
        endpoint = RequestContextMiddleware(_Endpoint(app, route, by_hand), **edge)
        hot.append((route.path_regex, endpoint))
    return _Dispatch(app, hot)
