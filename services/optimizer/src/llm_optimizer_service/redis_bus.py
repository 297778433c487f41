"""Cross-replica invalidation over Redis pub/sub (used when ``redis.url`` is set).

Every replica reloads all policies from the database each ``optimizer.cycle_interval`` (1 s by
default), which bounds how stale a replica can be. A policy change made on one replica (create,
patch, delete, promote, rollback) is also announced on the pub/sub channel ``POLICY_CHANNEL``
(redis_keys.py); every other replica reloads that workload at once, so the change is usually
seen in milliseconds instead of up to one interval.

Redis is an accelerator here, never a dependency of a request: publishing happens in the
background and a failure is only logged; the subscriber reconnects with backoff. While Redis is
down, replicas converge through the periodic reload, and ``/health`` says ``degraded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.redis_keys import POLICY_CHANNEL

log = get_logger(__name__)

TIMEOUT = 1.0
MAX_BACKOFF = 5.0

Reload = Callable[[Sequence[str]], Awaitable[None]]


class PolicyBus:
    """Announces local policy changes and applies other replicas' announcements."""

    def __init__(self, url: str, reload: Reload) -> None:
        self.origin = uuid.uuid4().hex
        self._reload = reload
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.connected = False
        self.received = 0

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-policy-bus")

    async def stop(self) -> None:
        tasks = [t for t in (self._listener, *self._pending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    def announce(self, names: Sequence[str]) -> None:
        """Publish in the background; never raises, never delays the caller."""
        task = asyncio.create_task(self._publish(list(names)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, names: list[str]) -> None:
        message = json.dumps({"origin": self.origin, "workloads": names})
        try:
            await self._client.publish(POLICY_CHANNEL, message)
        except (RedisError, OSError) as exc:
            log.warning("could not announce a policy change on Redis", error=str(exc))

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(POLICY_CHANNEL)
                    if not self.connected:
                        log.info("subscribed to policy changes on Redis", channel=POLICY_CHANNEL)
                    self.connected, backoff = True, 0.1
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=TIMEOUT
                        )
                        if message is not None:
                            await self._apply(message.get("data"))
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning(
                        "Redis unavailable; replicas converge by periodic reload", error=str(exc)
                    )
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _apply(self, data: object) -> None:
        try:
            payload = json.loads(data if isinstance(data, str | bytes) else "")
            names = [str(name) for name in payload["workloads"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed policy announcement", data=repr(data)[:200])
            return
        if payload.get("origin") == self.origin:
            return
        self.received += 1
        try:
            await self._reload(names)
        except Exception as exc:  # the periodic reload will catch up
            log.warning("reload after a policy announcement failed", error=str(exc))
