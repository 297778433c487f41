"""Errors as the contract's body: ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_optimizer_service.api.schemas import ErrorBody
from llm_optimizer_service.engine import EngineError, UnsupportedCandidateError
from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.runtime import ServiceUnavailableError

log = get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


class ValidationErrorBody(BaseModel):
    """FastAPI's own 422 body for a request that fails validation."""

    detail: list[dict[str, Any]]


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return. A 422 is either FastAPI's
    validation body or ours (a workload the engine rejects)."""
    return {
        status: {
            "model": ErrorBody | ValidationErrorBody if status == 422 else ErrorBody,
            "description": _HTTP_CODES[status],
        }
        for status in statuses
    }


# Answers any operation can give before its handler runs: a body the edge refuses
# (middleware.py) or one FastAPI cannot read.
EDGE_STATUSES = (400, 413, 415, 422)


def _json_safe(value: Any) -> Any:
    """FastAPI's validation errors echo the input. JSON has no NaN or Infinity and UTF-8 no lone
    surrogates (a JSON string may escape one), so such input is echoed as its Python text
    instead of failing the whole answer."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return error_response(422, "invalid_workload", str(exc))

    @app.exception_handler(UnsupportedCandidateError)
    async def _unsupported(_: Request, exc: UnsupportedCandidateError) -> JSONResponse:
        return error_response(422, "unsupported_candidate", str(exc))

    @app.exception_handler(ServiceUnavailableError)
    async def _unavailable(_: Request, exc: ServiceUnavailableError) -> JSONResponse:
        return error_response(503, "unavailable", f"{exc}; {exc.advice}", {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error; see the service log")
