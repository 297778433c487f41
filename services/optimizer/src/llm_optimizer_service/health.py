"""Health semantics (the contract's):

- live: the process runs (503 once shutdown has begun); checks no dependency;
- ready: migrations at head and policy state loaded (503 before, and during shutdown). A database
  or Redis outage after start does NOT flip readiness: decisions keep coming from the last state;
- health: component detail; ``degraded`` when a configured dependency is down but we still serve,
  when a workload's stored state is quarantined (``workloads``, named in ``quarantined``), or
  when the re-estimation cycle keeps failing (``optimizer``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Literal

import anyio.to_thread

from llm_optimizer_service.runtime import Runtime

ComponentStatus = Literal["ok", "degraded", "down", "disabled", "pending"]
CHECK_TIMEOUT = 2.0


async def _check(function: object, *args: object) -> ComponentStatus:
    try:
        await asyncio.wait_for(
            anyio.to_thread.run_sync(function, *args),  # type: ignore[arg-type]
            CHECK_TIMEOUT,
        )
    except Exception:
        return "down"
    return "ok"


def _redis_ping(url: str) -> None:
    import redis

    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def _tcp_connect(brokers: str) -> None:
    errors: list[OSError] = []
    for broker in brokers.split(","):
        host, _, port = broker.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port or 9092)), CHECK_TIMEOUT):
                return
        except OSError as exc:
            errors.append(exc)
    raise ConnectionError(f"no Kafka broker reachable: {errors}")


async def components(runtime: Runtime) -> dict[str, ComponentStatus]:
    settings = runtime.settings
    database = await _check(runtime.repository.ping)
    redis_status: ComponentStatus = "disabled"
    if settings.redis.url is not None:
        redis_status = await _check(_redis_ping, settings.redis.url.get_secret_value())
    kafka_status: ComponentStatus = "disabled"
    if settings.kafka.brokers:
        kafka_status = await _check(_tcp_connect, settings.kafka.brokers)
    schema = runtime.schema
    migrations_status: ComponentStatus = (
        "ok" if schema is not None and schema.at_head else "pending"
    )
    return {
        "database": database,
        "redis": redis_status,
        "kafka": kafka_status,
        "migrations": migrations_status,
        "workloads": "degraded" if runtime.quarantined else "ok",
        "optimizer": "degraded" if runtime.cycle_error else "ok",
    }


def overall(
    runtime: Runtime, parts: dict[str, ComponentStatus]
) -> Literal["ok", "degraded", "down"]:
    if not runtime.ready:
        return "down"
    if any(value in ("down", "degraded") for value in parts.values()):
        return "degraded"
    return "ok"
