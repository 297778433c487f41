"""Monitoring helpers only the tests use: the exporters' command lines, Alertmanager's routing
and alert APIs (the contract's metric list is ``ops.monitoring.contract_metrics``, re-exported
here for the tests that read it from this module)."""

from __future__ import annotations

from typing import Any, Final

import httpx

from ops import monitoring as mon
from ops.core.runner import Runner
from ops.monitoring import ContractMetric, contract_metrics

__all__ = ["ContractMetric", "contract_metrics"]  # the contract's list now lives in ops

POSTGRES_EXPORTER: Final = "prometheus-postgres-exporter"
REDIS_EXPORTER: Final = "prometheus-redis-exporter"
NODE_EXPORTER: Final = "prometheus-node-exporter"
POSTGRES_QUERIES: Final = mon.MONITORING_DIR / "postgres-exporter" / "queries.yaml"

# Placeholder URL in the committed alertmanager.yml, replaced at deploy time.
WEBHOOK_PLACEHOLDER: Final = "http://webhook.invalid/"


def amtool_routes(runner: Runner, labels: dict[str, str]) -> str:
    """The receiver Alertmanager's routing tree picks for an alert with these labels."""
    argv = ["amtool", "config", "routes", "test", f"--config.file={mon.ALERTMANAGER_CONFIG}"]
    argv += [f"{key}={value}" for key, value in labels.items()]
    result = runner.run(argv, check=False, capture=True)
    if result is None:  # dry run
        return ""
    if result.exited:
        raise RuntimeError(f"amtool config routes test failed:\n{result.stdout}{result.stderr}")
    return str(result.stdout).strip().splitlines()[-1].strip()


def postgres_exporter(listen: str, dsn: str) -> tuple[list[str], dict[str, str]]:
    """postgres_exporter's command line and environment (the DSN never goes on the command line)."""
    argv = [
        POSTGRES_EXPORTER,
        f"--web.listen-address={listen}",
        f"--extend.query-path={POSTGRES_QUERIES}",
    ]
    return argv, {"DATA_SOURCE_NAME": dsn}


def redis_exporter_argv(listen: str, redis_url: str) -> list[str]:
    """redis_exporter's command line."""
    return [REDIS_EXPORTER, f"-web.listen-address={listen}", f"-redis.addr={redis_url}"]


def node_exporter_argv(listen: str) -> list[str]:
    """node_exporter's command line."""
    return [NODE_EXPORTER, f"--web.listen-address={listen}"]


def alertmanager_alerts(alertmanager: str, **filters: str) -> list[dict[str, Any]]:
    """Alerts Alertmanager holds (API v2), optionally filtered by label equality."""
    params = httpx.QueryParams([("filter", f'{key}="{value}"') for key, value in filters.items()])
    response = httpx.get(f"{alertmanager}/api/v2/alerts", params=params, timeout=5.0)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts
