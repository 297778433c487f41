"""Per-API-key request quotas shared by every replica, counted in Redis.

A fixed one-minute window per key: ``INCR <RATE_LIMIT_PREFIX><key id>:<minute>`` (the prefix is
in redis_keys.py), with an expiry, in one round trip. Over the quota, the REST API answers 429
with ``Retry-After`` (seconds to the next window) and the gRPC API RESOURCE_EXHAUSTED with a
``retry-after`` trailer; both count against the same quota (a gRPC stream counts once, when it
opens). Used only when ``redis.url`` is set and ``redis.rate_limit_per_minute`` > 0.

Redis is never a reason for a request to fail: when it does not answer within the timeout the
request is let through (fail open) and a warning is logged at most once per window; ``/health``
already says ``degraded`` then.
"""

from __future__ import annotations

import contextlib
import time
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.redis_keys import RATE_LIMIT_PREFIX

log = get_logger(__name__)

WINDOW_S: Final = 60
TIMEOUT_S: Final = 0.25


def over_quota_message(per_minute: int, retry_after: int) -> str:
    return (
        f"this API key made more than {per_minute} requests this minute "
        f"(redis.rate_limit_per_minute); retry in {retry_after} s"
    )


class RateLimiter:
    """Counts requests per key and window; ``retry_after`` says when an over-quota key may retry."""

    def __init__(self, url: str, per_minute: int) -> None:
        self.per_minute = per_minute
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._warned_window = -1

    async def retry_after(self, key_id: str, now: float | None = None) -> int | None:
        """None when ``key_id`` is within its quota (or Redis is down), else seconds to wait."""
        now = time.time() if now is None else now
        window = int(now // WINDOW_S)
        key = f"{RATE_LIMIT_PREFIX}{key_id}:{window}"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_S * 2)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            if self._warned_window != window:
                self._warned_window = window
                log.warning("rate limit not enforced: Redis does not answer", error=str(exc))
            return None
        if int(count) <= self.per_minute:
            return None
        return max(1, int((window + 1) * WINDOW_S - now + 0.999))

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
