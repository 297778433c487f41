"""Live: Debian's Prometheus scrapes the running service and the real postgres, redis and node
exporters with the repository's rules; the contract's metrics come back from queries; stopping
the service makes ServiceDown fire and reach a real Alertmanager (asked through its API).

Test-only override: ServiceDown's `for:` (1m in the rules) is shortened to 2s in a temporary
copy of the rules, and Prometheus scrapes and evaluates every second, to keep the test short.
Everything else (rules, jobs, Alertmanager routing) is the committed configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops import monitoring as mon
from ops.core.runner import Runner
from ops.monitoring import checks, stack
from tests._support import monitoring as support
from tests._support.postgres import PostgresServer
from tests._support.service import START_TIMEOUT, RunningService, wait_ready
from tests._support.tools import free_port, require_tool
from tests.monitoring.traffic import drive_traffic, scrape

SERVICE_DOWN_FOR = "2s"  # test-only; the rule says 1m


def _rules_with_short_service_down(directory: Path) -> list[str]:
    directory.mkdir()
    paths = []
    for path in mon.rule_files():
        data = mon.load_yaml(path)
        for group in data["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "ServiceDown":
                    rule["for"] = SERVICE_DOWN_FOR
        paths.append(stack.write_yaml(directory / path.name, data))
    return [str(path) for path in paths]


def _eventually(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def _exporters(
    start_server: Callable[..., stack.Server], postgres: PostgresServer, redis_url: str
) -> dict[str, str]:
    """Start the three exporters; job name -> host:port."""
    addresses = {job: f"127.0.0.1:{free_port()}" for job in ("postgres", "redis", "node")}
    dsn = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/postgres?sslmode=disable"
    argv, env = support.postgres_exporter(addresses["postgres"], dsn)
    servers = [
        start_server("postgres-exporter", argv, env),
        start_server("redis-exporter", support.redis_exporter_argv(addresses["redis"], redis_url)),
        start_server("node-exporter", support.node_exporter_argv(addresses["node"])),
    ]
    for server, address in zip(servers, addresses.values(), strict=True):
        stack.wait_http(server, f"http://{address}/metrics")
    return addresses


@pytest.mark.postgres
@pytest.mark.redis
def test_prometheus_scrapes_everything_and_service_down_reaches_alertmanager(
    tmp_path: Path,
    runner: Runner,
    service_factory: Callable[..., RunningService],
    postgres: PostgresServer,
    redis_url: str,
    start_server: Callable[..., stack.Server],
) -> None:
    for tool in (stack.PROMETHEUS, stack.ALERTMANAGER, support.POSTGRES_EXPORTER,
                 support.REDIS_EXPORTER, support.NODE_EXPORTER, "promtool"):  # fmt: skip
        require_tool(tool)
    # The service boots (migrations on PostgreSQL) while the monitoring stack starts.
    service = service_factory(
        env={"LLM_OPTIMIZER_DATABASE__URL": postgres.create_database("test_monitoring"),
             "LLM_OPTIMIZER_REDIS__URL": redis_url},
        wait=False,
    )  # fmt: skip
    exporters = _exporters(start_server, postgres, redis_url)

    # The exporter allow-list holds: every listed name is exported by the real exporter.
    exporter_sections = {"postgres_exporter": "postgres", "redis_exporter": "redis",
                         "node_exporter": "node"}  # fmt: skip
    for section, names in mon.exporter_metrics_by_exporter().items():
        if section in exporter_sections:
            exported = mon.exposition_names(
                scrape(f"http://{exporters[exporter_sections[section]]}/metrics")
            )
            assert names <= exported, f"{section} does not export {sorted(names - exported)}"

    am_address = f"127.0.0.1:{free_port()}"
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(checks.render_alertmanager_config(f"http://127.0.0.1:{free_port()}/"))
    alertmanager = start_server(
        "alertmanager", stack.alertmanager_argv(am_config, tmp_path / "am-data", am_address)
    )
    prom_address = f"127.0.0.1:{free_port()}"
    config = stack.prometheus_config(
        self_address=prom_address,
        targets={
            mon.SERVICE_JOB: [f"127.0.0.1:{service.metrics_port}"],
            **{job: [address] for job, address in exporters.items()},
        },
        alertmanager=am_address,
        rule_files=_rules_with_short_service_down(tmp_path / "rules"),
        scrape_interval="1s",
    )
    prom_config = stack.write_yaml(tmp_path / "prometheus.yml", config)
    runner.run(["promtool", "check", "config", str(prom_config)], capture=True)
    prometheus = start_server(
        "prometheus", stack.prometheus_argv(prom_config, tmp_path / "prom-data", prom_address)
    )
    am, prom = f"http://{am_address}", f"http://{prom_address}"
    stack.wait_http(alertmanager, f"{am}/-/ready")
    stack.wait_http(prometheus, f"{prom}/-/ready")
    wait_ready(service.http_url, service.process, service.log_path, START_TIMEOUT)
    drive_traffic(service)

    jobs = {mon.SERVICE_JOB, "postgres", "redis", "node", "prometheus", "alertmanager"}
    _eventually(
        "every target up",
        lambda: {r["metric"]["job"] for r in stack.query(prom, "up == 1")} >= jobs,
    )
    assert stack.query(prom, "pg_up == 1")
    assert stack.query(prom, "redis_up == 1")

    # Queries return data for every contract metric the service exports.
    for metric in support.contract_metrics():
        selector = (
            f'{{__name__=~"{metric.name}.+", job="{mon.SERVICE_JOB}"}}'
            if metric.is_prefix
            else f'{{__name__="{metric.sample_names()[-1]}", job="{mon.SERVICE_JOB}"}}'
        )
        assert stack.query(prom, f"count({selector})"), f"no data for {metric.name}"
    # ... and the recording rules compute from them.
    _eventually(
        "recorded request rate",
        lambda: stack.query(prom, f'job:http_requests:rate5m{{job="{mon.SERVICE_JOB}"}}'),
    )
    _eventually(
        "recorded decision rate",
        lambda: stack.query(prom, "workload_arm:optimization_decisions:rate5m"),
    )

    # Stop the service: ServiceDown fires in Prometheus and reaches Alertmanager.
    assert service.terminate() == 0
    instance = f"127.0.0.1:{service.metrics_port}"
    _eventually(
        "ServiceDown firing in Prometheus",
        lambda: stack.query(prom, 'ALERTS{alertname="ServiceDown", alertstate="firing"}'),
    )
    alerts = _eventually(
        "ServiceDown in Alertmanager",
        lambda: support.alertmanager_alerts(am, alertname="ServiceDown"),
    )
    (alert,) = alerts
    assert alert["labels"] == {"alertname": "ServiceDown", "job": mon.SERVICE_JOB,
                               "instance": instance, "severity": "critical"}  # fmt: skip
    assert alert["annotations"]["runbook_url"] == mon.runbook_url("ServiceDown")
    assert instance in alert["annotations"]["description"]
    assert alert["status"]["state"] == "active"
    assert [r["name"] for r in alert["receivers"]] == ["critical"]
    assert httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["status"] == "success"
