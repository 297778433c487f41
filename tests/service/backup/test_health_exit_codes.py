"""``llm-optimizer-service health`` exit codes, each provoked for real against a running service
with PostgreSQL and Redis (contract: 0 healthy, 1 unhealthy, 2 degraded).

- all up → 0;
- Redis stopped → 2 (the service keeps deciding and reports degraded);
- PostgreSQL stopped → 2 (a database outage after start does not flip readiness: degraded);
- the service stopped (not reachable, not ready) → 1.

``health --live`` (the container HEALTHCHECK) stays 0 through both dependency outages and is 1
once the service is gone: an outage must not get containers restarted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from llm_optimizer_service.cli import app
from typer.testing import CliRunner

from tests._support.postgres import PostgresServer
from tests._support.redis_server import RedisServer
from tests._support.service import RunningService


def test_health_exit_codes(
    postgres: PostgresServer,
    postgres_url: str,
    redis: RedisServer,
    service_factory: Callable[..., RunningService],
) -> None:
    service = service_factory(
        {"LLM_OPTIMIZER_DATABASE__URL": postgres_url, "LLM_OPTIMIZER_REDIS__URL": redis.url}
    )
    runner = CliRunner()

    def health(expect: int = 0, *flags: str) -> tuple[int, dict[str, object]]:
        """The exit code (polled up to 20 s for ``expect``: a loaded host may be slow) and body."""
        deadline = time.monotonic() + 20
        while True:
            result = runner.invoke(
                app,
                ["health", "--json", "--timeout", "3", *flags],
                env=service.env,
                catch_exceptions=False,
            )
            if result.exit_code == expect or time.monotonic() > deadline:
                return result.exit_code, json.loads(result.stdout)
            time.sleep(0.5)

    code, body = health()
    assert code == 0, body
    assert body["status"] == "healthy"

    redis.stop()
    try:
        code, body = health(2)
        assert code == 2, body
        assert body["checks"]["http"]["components"]["redis"] == "down"  # type: ignore[index]
        assert health(0, "--live")[0] == 0
    finally:
        redis.start()
    assert health()[0] == 0

    postgres.stop()
    try:
        code, body = health(2)
        assert code == 2, body
        assert body["checks"]["database"]["status"] == "unhealthy"  # type: ignore[index]
        assert body["checks"]["http"]["components"]["database"] == "down"  # type: ignore[index]
        code, body = health(0, "--live")
        assert code == 0, body
        assert list(body["checks"]) == ["live"]  # type: ignore[call-overload]
    finally:
        postgres.start()
    assert health()[0] == 0

    service.terminate()
    code, body = health(1)
    assert code == 1, body
    assert body["status"] == "unhealthy"
    code, body = health(1, "--live")
    assert code == 1, body
    assert body["status"] == "unhealthy"
