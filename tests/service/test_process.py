"""The real ``llm-optimizer-service serve`` process: probes, metrics port, graceful shutdown,
production's refusals, keys never logged, the health command."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from llm_optimizer_service.cli import app
from typer.testing import CliRunner

from tests._support.api import ARMS, create_workload, round_trips
from tests._support.service import RunningService

OWNED_METRICS = (
    "http_requests_total",
    "http_request_duration_seconds",
    "optimization_decisions_total",
    "optimization_feedback_total",
    "optimization_cycle_duration_seconds",
    "optimization_cost_total",
    "optimization_quality_score",
    "drift_score",
    "canary_deployment_status",
    "db_connections_active",
    "db_connections_max",
    "db_query_duration_seconds",
    "process_",
    "python_",
)


def traffic(service: RunningService, workload: str = "w", rounds: int = 5) -> None:
    with service.client() as client:
        create_workload(client, workload)
        round_trips(client, workload, rounds)
        assert (
            client.post(
                f"/api/v1/workloads/{workload}/promote", json={"arm": "a", "canary_percent": 10}
            ).status_code
            == 200
        )
        assert client.get(f"/api/v1/workloads/{workload}/report").status_code == 200


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
        "workloads": "ok",
        "optimizer": "ok",
    }
    assert detail["quarantined"] == {}
    assert set(httpx.get(f"{base}/version").json()) == {"version", "git_sha", "build_date"}


def test_metrics_port_has_every_owned_metric(running_service: RunningService) -> None:
    service = running_service
    traffic(service, "metrics")
    time.sleep(1.2)  # at least one re-estimation cycle (the fixture's interval is 1 s)
    scrape = httpx.get(service.metrics_url)
    assert scrape.status_code == 200
    names = {
        line.split("{")[0].split(" ")[0]
        for line in scrape.text.splitlines()
        if line and not line.startswith("#")
    }
    for metric in OWNED_METRICS:
        assert any(name.startswith(metric) for name in names), f"{metric} not exported"
    assert 'optimization_decisions_total{arm="a",workload="metrics"}' in scrape.text or (
        'optimization_decisions_total{arm="b",workload="metrics"}' in scrape.text
    )
    assert 'canary_deployment_status{status="canary",workload="metrics"} 1.0' in scrape.text
    assert (
        'http_requests_total{method="POST",route="/api/v1/workloads/{name}/decide",status="200"}'
        in scrape.text
    )
    assert "optimization_cycle_duration_seconds_count" in scrape.text
    # the metrics port serves /metrics and nothing else; the API port does not serve metrics
    assert httpx.get(service.metrics_url.replace("/metrics", "/health")).status_code == 404
    assert httpx.get(f"{service.http_url}/metrics").status_code == 404


def test_keys_never_appear_in_logs(running_service: RunningService) -> None:
    service = running_service
    traffic(service, "keys")
    wrong = "wrong-key-that-must-not-be-logged-1234"
    assert (
        httpx.get(
            f"{service.http_url}/api/v1/workloads", headers={"Authorization": f"Bearer {wrong}"}
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{service.http_url}/api/v1/workloads",
            json={"name": "z", "arms": ARMS},
            headers={"Authorization": f"Bearer {service.read_key}"},
        ).status_code
        == 403
    )
    time.sleep(0.2)
    logs = service.logs()
    assert '"request_id"' in logs
    assert '"key_id": "key-' in logs
    for secret in (service.api_key, service.read_key, wrong):
        assert secret not in logs
    for line in logs.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "request":
                assert record["request_id"]


def _slow_body(payload: bytes, seconds: float) -> Iterator[bytes]:
    pieces = 6
    step = max(len(payload) // pieces, 1)
    for start in range(0, len(payload), step):
        time.sleep(seconds / pieces)
        yield payload[start : start + step]


def test_sigterm_drains_in_flight_requests(service_factory: Callable[..., RunningService]) -> None:
    service = service_factory(
        {"LLM_OPTIMIZER_SERVER__SHUTDOWN_DELAY": "3", "LLM_OPTIMIZER_SERVER__GRACE_PERIOD": "20"}
    )
    with service.client() as client:
        assert client.post("/api/v1/workloads", json={"name": "w", "arms": ARMS}).status_code == 201
        ids = [client.post("/api/v1/workloads/w/decide").json()["decision_id"] for _ in range(8)]
    results: list[Any] = []

    def slow_feedback(decision_id: str) -> None:
        body = json.dumps(
            {"decision_id": decision_id, "quality": 0.5, "cost_usd": 0.0, "latency_ms": 10}
        ).encode()
        try:
            response = httpx.post(
                f"{service.http_url}/api/v1/feedback",
                content=_slow_body(body, 5.0),
                headers={**service.headers, "Content-Type": "application/json"},
                timeout=30,
            )
            results.append(response.status_code)
        except httpx.HTTPError as exc:  # pragma: no cover - reported by the assertion
            results.append(repr(exc))

    threads = [threading.Thread(target=slow_feedback, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    time.sleep(0.8)  # all eight are now in flight; their bodies finish ~2 s after the drain
    service.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ready = httpx.get(f"{service.http_url}/health/ready", timeout=5)
    live = httpx.get(f"{service.http_url}/health/live", timeout=5)
    assert ready.status_code == 503
    assert ready.json() == {"status": "shutting_down"}
    assert live.status_code == 503
    for thread in threads:
        thread.join(30)
    assert results == [202] * 8
    assert service.process.wait(30) == 0
    logs = service.logs()
    assert "shutdown begun" in logs
    assert "stopped" in logs


def test_production_refuses_a_schema_not_at_head_then_serves_after_upgrade(
    service_factory: Callable[..., RunningService], tmp_path: Path
) -> None:
    data_dir = tmp_path / "prod-data"
    env = {"LLM_OPTIMIZER_ENVIRONMENT": "production", "LLM_OPTIMIZER_DATA_DIR": str(data_dir)}
    refused = service_factory(env, wait=False)
    assert refused.process.wait(90) == 1
    assert "refusing to serve" in refused.logs()
    assert "db upgrade" in refused.logs()
    upgraded = CliRunner().invoke(
        app, ["db", "upgrade"], env={"LLM_OPTIMIZER_DATA_DIR": str(data_dir)}
    )
    assert upgraded.exit_code == 0, upgraded.output
    service = service_factory(env)
    assert httpx.get(f"{service.http_url}/api/v1/workloads").status_code == 401
    with service.client() as client:
        assert client.get("/api/v1/workloads").status_code == 200


def test_health_command(running_service: RunningService) -> None:
    runner = CliRunner()
    env = {
        "LLM_OPTIMIZER_DATA_DIR": str(running_service.data_dir),
        "LLM_OPTIMIZER_SERVER__HTTP_PORT": str(running_service.http_port),
        "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(running_service.grpc_port),
    }
    healthy = runner.invoke(app, ["health", "--json"], env=env)
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.stdout)["status"] == "healthy"
    # the service answers but this CLI's database is empty (not at head): degraded
    degraded = runner.invoke(
        app, ["health"], env={**env, "LLM_OPTIMIZER_DATA_DIR": str(running_service.data_dir / "x")}
    )
    assert degraded.exit_code == 2, degraded.output
    down = runner.invoke(app, ["health", "--url", "http://127.0.0.1:9", "--timeout", "1"], env=env)
    assert down.exit_code == 1


def test_simulate_command(running_service: RunningService) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--url",
            running_service.http_url,
            "--workload",
            "sim",
            "--requests",
            "60",
            "--concurrency",
            "4",
            "--json",
        ],
        env={"LLM_OPTIMIZER_API_KEY": running_service.api_key},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requests"] == 60
    assert sum(arm["chosen"] for arm in summary["arms"]) == 60
    assert summary["best_arm"] in {"large", "medium", "small"}
    with running_service.client() as client:
        report = client.get("/api/v1/workloads/sim/report").json()
    assert sum(arm["feedback"] for arm in report["arms"]) == 60
    refused = CliRunner().invoke(
        app, ["simulate", "--url", running_service.http_url], env={"LLM_OPTIMIZER_API_KEY": "bad"}
    )
    assert refused.exit_code == 1
    assert "HTTP 401" in refused.stderr


def test_a_busy_port_is_a_clear_error(service_factory: Callable[..., RunningService]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        service = service_factory({"LLM_OPTIMIZER_SERVER__HTTP_PORT": str(port)}, wait=False)
        assert service.process.wait(90) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in service.logs()
    assert "LLM_OPTIMIZER_SERVER__HTTP_PORT" in service.logs()
