"""Per-API-key rate limits counted in Redis: shared quota, 429 + Retry-After, fail open."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests._support.redis_server import redis_server
from tests._support.service import start_service

LIMIT = 5


def test_quota_per_key_429_with_retry_after_and_fail_open(tmp_path: Path) -> None:
    with redis_server() as redis:
        env = {
            "LLM_OPTIMIZER_REDIS__URL": redis.url,
            "LLM_OPTIMIZER_REDIS__RATE_LIMIT_PER_MINUTE": str(LIMIT),
        }
        with start_service(tmp_path, env) as svc:
            url = f"{svc.http_url}/api/v1/workloads"
            own = {"Authorization": f"Bearer {svc.api_key}"}
            other = {"Authorization": f"Bearer {svc.read_key}"}
            statuses = [httpx.get(url, headers=own).status_code for _ in range(LIMIT)]
            assert statuses == [200] * LIMIT
            over = httpx.get(url, headers=own)
            assert over.status_code == 429
            assert over.json()["error"]["code"] == "rate_limited"
            assert "redis.rate_limit_per_minute" in over.json()["error"]["message"]
            assert 1 <= int(over.headers["Retry-After"]) <= 60
            # Another key has its own quota; health probes are never limited.
            assert httpx.get(url, headers=other).status_code == 200
            assert httpx.get(f"{svc.http_url}/health/ready").status_code == 200
            # The counter lives in Redis (shared by every replica), keyed by the key's id.
            keys = redis.client().keys("llm-optimizer:ratelimit:*")
            assert len(keys) == 2
            # Redis down: requests are let through (fail open), nothing fails because of it.
            redis.stop()
            assert httpx.get(url, headers=own).status_code == 200
            assert httpx.get(f"{svc.http_url}/health").json()["status"] == "degraded"
