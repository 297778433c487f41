"""Monitoring helpers only the tests use: the contract's metric list, the exporters' command
lines, Alertmanager's routing and alert APIs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from ops import monitoring as mon
from ops.core import project
from ops.core.runner import Runner

POSTGRES_EXPORTER: Final = "prometheus-postgres-exporter"
REDIS_EXPORTER: Final = "prometheus-redis-exporter"
NODE_EXPORTER: Final = "prometheus-node-exporter"
POSTGRES_QUERIES: Final = mon.MONITORING_DIR / "postgres-exporter" / "queries.yaml"

# Placeholder URL in the committed alertmanager.yml, replaced at deploy time.
WEBHOOK_PLACEHOLDER: Final = "http://webhook.invalid/"


@dataclass(frozen=True)
class ContractMetric:
    """One metric of the contract's Metrics section."""

    name: str  # the name, or a prefix such as ``process_`` for ``process_*``
    labels: tuple[str, ...]
    histogram: bool

    @property
    def is_prefix(self) -> bool:
        """True for the ``process_*``/``python_*`` families."""
        return self.name.endswith("_")

    def sample_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for it (a histogram's _bucket, _sum and _count)."""
        if self.histogram:
            return tuple(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        return (self.name,)


def contract_metrics(
    contract: Path = project.ROOT / "docs" / "contract.md",
) -> list[ContractMetric]:
    """The metrics the product contract names (docs/contract.md, section "Metrics")."""
    text = contract.read_text(encoding="utf-8")
    match = re.search(r"^## Metrics.*?$(.*?)^## ", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{contract} has no '## Metrics' section")
    metrics = []
    for line in match.group(1).splitlines():
        tokens = list(re.finditer(r"`([a-z_:]+)(\*)?(?:\{([a-z_,]*)\})?`", line))
        for index, token in enumerate(tokens):
            end = tokens[index + 1].start() if index + 1 < len(tokens) else len(line)
            histogram = "(histogram" in line[token.end() : end]
            labels = tuple(filter(None, (token.group(3) or "").split(",")))
            metrics.append(ContractMetric(token.group(1), labels, histogram))
    if not metrics:
        raise ValueError(f"no metric names found in the Metrics section of {contract}")
    return metrics


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
