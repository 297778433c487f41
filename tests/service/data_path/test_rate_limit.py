"""Per-API-key rate limits counted in Redis: one quota for REST and gRPC, 429 + Retry-After and
RESOURCE_EXHAUSTED + retry-after, fail open."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx
import pytest
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc
from llm_optimizer_service.redis_keys import RATE_LIMIT_PREFIX

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
            _not_near_a_window_edge()
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
            # gRPC draws on the same quota: this key is over it there too.
            with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
                stub = pb_grpc.OptimizerStub(channel)
                auth = (("authorization", f"Bearer {svc.api_key}"),)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetReport(pb.GetReportRequest(workload="any"), metadata=auth, timeout=5)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "redis.rate_limit_per_minute" in refused.value.details()
                trailers = dict(refused.value.trailing_metadata())
                assert 1 <= int(trailers["retry-after"]) <= 60
                # Another key has its own quota: its first request passes; gRPC calls count
                # against it like REST ones.
                assert httpx.get(url, headers=other).status_code == 200
                read_auth = (("authorization", f"Bearer {svc.read_key}"),)
                for _ in range(LIMIT - 1):
                    with pytest.raises(grpc.RpcError) as missing:
                        stub.GetReport(
                            pb.GetReportRequest(workload="none"), metadata=read_auth, timeout=5
                        )
                    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert httpx.get(url, headers=other).status_code == 429
            # Health probes are never limited.
            assert httpx.get(f"{svc.http_url}/health/ready").status_code == 200
            # The counter lives in Redis (shared by every replica), keyed by the key's id.
            keys = redis.client().keys(f"{RATE_LIMIT_PREFIX}*")
            assert len(keys) == 2
            # Redis down: requests are let through (fail open), nothing fails because of it.
            redis.stop()
            assert httpx.get(url, headers=own).status_code == 200
            assert httpx.get(f"{svc.http_url}/health").json()["status"] == "degraded"


def _not_near_a_window_edge() -> None:
    """The quota is per calendar minute: start the counted requests early in one."""
    if time.time() % 60 > 45:
        time.sleep(60 - time.time() % 60 + 0.1)
