"""``llm-optimizer-service health``: the running service over HTTP, plus the database directly.

healthy: everything ok; degraded: the service serves but a dependency (or the direct database
check) is down; unhealthy: the service is not ready or not reachable.
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
    if not status.at_head:
        return {
            "status": "unhealthy",
            "detail": f"schema at {status.current}, head is {status.head}; run db upgrade",
        }
    return {"status": "ok", "detail": f"schema at head ({status.head})"}


def run_checks(settings: Settings, url: str | None, timeout: float) -> dict[str, Any]:
    checks = {
        "http": _http(url or default_url(settings), timeout),
        "database": _database(settings, timeout),
    }
    if checks["http"]["status"] == "unhealthy":
        overall = "unhealthy"
    elif all(check["status"] == "ok" for check in checks.values()):
        overall = "healthy"
    else:
        overall = "degraded"
    return {"status": overall, "checks": checks}
