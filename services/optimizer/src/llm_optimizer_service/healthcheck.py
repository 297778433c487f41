"""``llm-optimizer-service health``: the running service over HTTP and gRPC (standard health
check), plus the database, Redis and Kafka directly (each when configured).

healthy: everything ok; degraded: the service serves but a dependency (database, Redis, Kafka)
is down; unhealthy: the service is not ready or not reachable over HTTP or gRPC.

``--live`` checks only that the process answers ``GET /health/live`` (healthy or unhealthy, never
degraded): the container HEALTHCHECK, where a dependency outage must not get the container
restarted and Docker reserves exit code 2.
"""

from __future__ import annotations

from typing import Any

import httpx

from llm_optimizer_service.settings import Settings

_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def default_url(settings: Settings) -> str:
    host = _LOCAL.get(settings.server.host, settings.server.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.http_port}"


def _http(url: str, timeout: float) -> dict[str, Any]:
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"status": "unhealthy", "detail": f"{url}: {exc}"}
    status = body.get("status") if isinstance(body, dict) else None
    mapping = {"ok": "ok", "degraded": "degraded"}
    return {
        "status": mapping.get(str(status), "unhealthy"),
        "detail": f"{url} answered {response.status_code} status={status}",
        "components": body.get("components") if isinstance(body, dict) else None,
    }


def _live(url: str, timeout: float) -> dict[str, Any]:
    try:
        response = httpx.get(f"{url.rstrip('/')}/health/live", timeout=timeout)
    except httpx.HTTPError as exc:
        return {"status": "unhealthy", "detail": f"{url}: {exc}"}
    return {
        "status": "ok" if response.status_code == 200 else "unhealthy",
        "detail": f"{url}/health/live answered {response.status_code}",
    }


def run_live_check(settings: Settings, url: str | None, timeout: float) -> dict[str, Any]:
    """Liveness only: the process serves HTTP and has not begun shutting down."""
    check = _live(url or default_url(settings), timeout)
    overall = "healthy" if check["status"] == "ok" else "unhealthy"
    return {"status": overall, "checks": {"live": check}}


def _database(settings: Settings, timeout: float) -> dict[str, Any]:
    from sqlalchemy.exc import SQLAlchemyError

    from llm_optimizer_service.storage import migrations
    from llm_optimizer_service.storage.db import make_engine

    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        status = migrations.schema_status(engine)
    except SQLAlchemyError as exc:
        return {"status": "unhealthy", "detail": f"cannot connect: {type(exc).__name__}"}
    finally:
        engine.dispose()
    if status.problem:
        return {"status": "unhealthy", "detail": status.problem}
    if not status.at_head:
        return {
            "status": "unhealthy",
            "detail": f"schema at {status.current}, head is {status.head}; run db upgrade",
        }
    return {"status": "ok", "detail": f"schema at head ({status.head})"}


def grpc_address(settings: Settings) -> str:
    host = _LOCAL.get(settings.server.host, settings.server.host)
    return (
        f"[{host}]:{settings.server.grpc_port}"
        if ":" in host
        else (f"{host}:{settings.server.grpc_port}")
    )


def _grpc(address: str, timeout: float) -> dict[str, Any]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as exc:
        return {"status": "unhealthy", "detail": f"{address}: {exc.code().name} {exc.details()}"}
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return {
        "status": "ok" if name == "SERVING" else "unhealthy",
        "detail": f"{address} grpc.health.v1 {name}",
    }


def _dependency(check: Any, target: str, what: str) -> dict[str, Any]:
    try:
        check(target)
    except Exception as exc:
        return {"status": "degraded", "detail": f"{what} unreachable: {type(exc).__name__}"}
    return {"status": "ok", "detail": f"{what} answers"}


def run_checks(settings: Settings, url: str | None, timeout: float) -> dict[str, Any]:
    from llm_optimizer_service.health import _redis_ping, _tcp_connect

    checks = {
        "http": _http(url or default_url(settings), timeout),
        "grpc": _grpc(grpc_address(settings), timeout),
        "database": _database(settings, timeout),
    }
    if settings.redis.url is not None:
        checks["redis"] = _dependency(_redis_ping, settings.redis.url.get_secret_value(), "Redis")
    if settings.kafka.brokers:
        checks["kafka"] = _dependency(_tcp_connect, settings.kafka.brokers, "Kafka broker")
    if checks["http"]["status"] == "unhealthy" or checks["grpc"]["status"] == "unhealthy":
        overall = "unhealthy"
    elif all(check["status"] == "ok" for check in checks.values()):
        overall = "healthy"
    else:
        overall = "degraded"
    return {"status": overall, "checks": checks}
