"""The real ``llm-optimizer-service serve`` process: probes, version, metrics port, keys in logs."""

from __future__ import annotations

import httpx

from tests._support.service import RunningService


def test_probes_and_version(running_service: RunningService) -> None:
    base = running_service.http_url
    assert httpx.get(f"{base}/health/live").json() == {"status": "ok"}
    assert httpx.get(f"{base}/health/ready").status_code == 200
    detail = httpx.get(f"{base}/health").json()
    assert detail["status"] == "ok"
    assert detail["components"] == {
        "database": "ok",
        "redis": "disabled",
        "kafka": "disabled",
        "migrations": "ok",
    }
    version = httpx.get(f"{base}/version").json()
    assert set(version) == {"version", "git_sha", "build_date"}


def test_metrics_port_serves_only_metrics(running_service: RunningService) -> None:
    scrape = httpx.get(running_service.metrics_url)
    assert scrape.status_code == 200
    assert "process_cpu_seconds_total" in scrape.text
    other = running_service.metrics_url.replace("/metrics", "/health")
    assert httpx.get(other).status_code == 404
    # and the API port does not serve metrics
    assert httpx.get(f"{running_service.http_url}/metrics").status_code == 404
