"""The Grafana dashboards, as code: ``invoke monitoring.dashboards`` writes them as JSON into
``monitoring/grafana/dashboards/`` (committed; a test fails when they differ from this code).

Every panel and variable queries the data source chosen by the ``${datasource}`` variable, never
a data source by name, and every dashboard has a stable ``uid``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ops.monitoring import DASHBOARDS_DIR, SERVICE_JOB

DATASOURCE: Final[Mapping[str, str]] = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION: Final = 39
SVC: Final = f'job="{SERVICE_JOB}"'
RATE: Final = "$__rate_interval"
WIDTH: Final = 24  # Grafana's grid


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A time series (or stat) panel."""

    title: str
    targets: Sequence[Target]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    max: float | None = None
    extra_defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """A row header; the panels below it until the next row belong to it."""

    title: str


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def _query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "current": {},
        "hide": 0,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "regex": "",
        "sort": 1,
        "options": [],
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, **panel.extra_defaults}
    if panel.max is not None:
        defaults["max"] = panel.max
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": dict(DATASOURCE),
                "expr": target.expr,
                "legendFormat": target.legend,
                "range": True,
            }
            for index, target in enumerate(panel.targets)
        ],
    }
    return body


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    items: Sequence[Panel | Row],
    variables: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A complete dashboard: panels laid out left to right, rows spanning the width."""
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            if x:
                y += row_height
            x, row_height = 0, 0
            panels.append(
                {
                    "id": panel_id,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                    "panels": [],
                }
            )
            y += 1
            continue
        if x + item.width > WIDTH:
            x, y = 0, y + row_height
            row_height = 0
        panels.append(_panel_json(item, panel_id, x, y))
        x += item.width
        row_height = max(row_height, item.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["llm-optimizer"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [_datasource_variable(), *variables]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    """The service: traffic, errors, latency, the optimizer's state, the process and its pool."""
    wl = 'workload=~"$workload"'
    return dashboard(
        uid="llm-optimizer-overview",
        title="LLM Optimizer / Overview",
        description="The optimizer service: API traffic, errors and latency, decisions, "
        "quality, cost, drift, the re-estimation cycle, CPU, memory and the database pool.",
        variables=[
            _query_variable(
                "workload", "Workload", "label_values(optimization_decisions_total, workload)"
            )
        ],
        items=[
            Row("API"),
            Panel(
                "Request rate",
                [
                    Target(
                        f"sum by (route) (rate(http_requests_total{{{SVC}}}[{RATE}]))",
                        "REST {{route}}",
                    ),
                    Target(
                        f"sum by (grpc_method) (rate(grpc_server_handled_total{{{SVC}}}[{RATE}]))",
                        "gRPC {{grpc_method}}",
                    ),
                ],
                unit="reqps",
                width=8,
            ),
            Panel(
                "Error ratio (5xx / all)",
                [
                    Target(f"job:http_requests_error_ratio:rate5m{{{SVC}}}", "REST"),
                    Target(f"job:grpc_server_handled_error_ratio:rate5m{{{SVC}}}", "gRPC"),
                ],
                unit="percentunit",
                description="Share of REST requests answered 5xx and of gRPC calls ending with "
                "a server-error code, over 5 minutes (the alerts' recording rules).",
                width=8,
            ),
            Panel(
                "p95 latency",
                [
                    Target(
                        "histogram_quantile(0.95, sum by (le, route) "
                        f"(rate(http_request_duration_seconds_bucket{{{SVC}}}[{RATE}])))",
                        "REST {{route}}",
                    ),
                    Target(f"job:grpc_server_handling_seconds:p95_5m{{{SVC}}}", "gRPC"),
                ],
                unit="s",
                width=8,
            ),
            Row("Optimization"),
            Panel(
                "Decisions per arm",
                [
                    Target(
                        "sum by (workload, arm) "
                        f"(rate(optimization_decisions_total{{{SVC}, {wl}}}[{RATE}]))",
                        "{{workload}} / {{arm}}",
                    )
                ],
                unit="ops",
                width=12,
            ),
            Panel(
                "Feedback per arm",
                [
                    Target(
                        "sum by (workload, arm) "
                        f"(rate(optimization_feedback_total{{{SVC}, {wl}}}[{RATE}]))",
                        "{{workload}} / {{arm}}",
                    )
                ],
                unit="ops",
                width=12,
            ),
            Panel(
                "Quality score",
                [
                    Target(
                        f"avg by (workload) (optimization_quality_score{{{SVC}, {wl}}})",
                        "{{workload}}",
                    )
                ],
                unit="percentunit",
                max=1,
                width=8,
            ),
            Panel(
                "Cost rate",
                [
                    Target(
                        "sum by (workload, model) "
                        f"(rate(optimization_cost_total{{{SVC}, {wl}}}[{RATE}])) * 3600",
                        "{{workload}} / {{model}}",
                    )
                ],
                unit="currencyUSD",
                description="LLM spend reported through feedback, in USD per hour.",
                width=8,
            ),
            Panel(
                "Drift score",
                [Target(f"max by (workload) (drift_score{{{SVC}, {wl}}})", "{{workload}}")],
                unit="percentunit",
                max=1,
                width=8,
            ),
            Panel(
                "Optimization cycle duration",
                [
                    Target(
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(optimization_cycle_duration_seconds_bucket{{{SVC}}}[{RATE}])))",
                        "p95",
                    ),
                    Target(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(optimization_cycle_duration_seconds_bucket{{{SVC}}}[{RATE}])))",
                        "p50",
                    ),
                ],
                unit="s",
                width=12,
            ),
            Panel(
                "Canary status",
                [
                    Target(
                        f"max by (workload, status) (canary_deployment_status{{{SVC}, {wl}}}) == 1",
                        "{{workload}}: {{status}}",
                    )
                ],
                kind="stat",
                description="The current policy of each workload (none, canary, promoted, ...).",
                width=12,
            ),
            Row("Process and database"),
            Panel(
                "CPU",
                [Target(f"rate(process_cpu_seconds_total{{{SVC}}}[{RATE}])", "{{instance}}")],
                unit="percentunit",
                description="CPU time per second: 1 = one core.",
                width=6,
            ),
            Panel(
                "Memory",
                [Target(f"process_resident_memory_bytes{{{SVC}}}", "{{instance}}")],
                unit="bytes",
                width=6,
            ),
            Panel(
                "Database pool",
                [
                    Target(f"db_connections_active{{{SVC}}}", "active {{instance}}"),
                    Target(f"db_connections_max{{{SVC}}}", "max {{instance}}"),
                ],
                width=6,
            ),
            Panel(
                "Database query p95",
                [
                    Target(
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(db_query_duration_seconds_bucket{{{SVC}}}[{RATE}])))",
                        "p95",
                    )
                ],
                unit="s",
                width=6,
            ),
        ],
    )


def infrastructure() -> dict[str, Any]:
    """What the service depends on: PostgreSQL, Redis and the hosts, from the exporters."""
    return dashboard(
        uid="llm-optimizer-infrastructure",
        title="LLM Optimizer / Infrastructure",
        description="PostgreSQL, Redis and hosts, from postgres_exporter, redis_exporter and "
        "node_exporter.",
        items=[
            Row("PostgreSQL"),
            Panel(
                "PostgreSQL up",
                [Target("min by (instance) (pg_up)", "{{instance}}")],
                kind="stat",
                width=6,
            ),
            Panel(
                "Connections used",
                [
                    Target(
                        "sum by (instance) (pg_stat_activity_count) / on (instance) "
                        "max by (instance) (pg_settings_max_connections)",
                        "{{instance}}",
                    )
                ],
                unit="percentunit",
                max=1,
                width=6,
            ),
            Panel(
                "Replication lag",
                [Target("max by (instance) (pg_replication_lag)", "{{instance}}")],
                unit="s",
                width=6,
            ),
            Panel(
                "Database size",
                [Target("sum by (datname) (pg_database_size_bytes)", "{{datname}}")],
                unit="bytes",
                width=6,
            ),
            Row("Redis"),
            Panel(
                "Redis up",
                [Target("min by (instance) (redis_up)", "{{instance}}")],
                kind="stat",
                width=6,
            ),
            Panel(
                "Memory",
                [
                    Target("redis_memory_used_bytes", "used {{instance}}"),
                    Target("redis_memory_max_bytes > 0", "max {{instance}}"),
                ],
                unit="bytes",
                width=6,
            ),
            Panel(
                "Evictions and commands",
                [
                    Target(f"rate(redis_evicted_keys_total[{RATE}])", "evicted {{instance}}"),
                    Target(
                        f"rate(redis_commands_processed_total[{RATE}])", "commands {{instance}}"
                    ),
                ],
                unit="ops",
                width=6,
            ),
            Panel("Clients", [Target("redis_connected_clients", "{{instance}}")], width=6),
            Row("Hosts"),
            Panel(
                "Disk space left",
                [
                    Target(
                        'node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs"}'
                        " / node_filesystem_size_bytes",
                        "{{instance}} {{mountpoint}}",
                    )
                ],
                unit="percentunit",
                max=1,
                width=8,
            ),
            Panel("Load (1m)", [Target("node_load1", "{{instance}}")], width=8),
            Panel(
                "Memory available",
                [
                    Target(
                        "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                        "{{instance}}",
                    )
                ],
                unit="percentunit",
                max=1,
                width=8,
            ),
        ],
    )


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = {
        "llm-optimizer-overview.json": overview(),
        "llm-optimizer-infrastructure.json": infrastructure(),
    }
    return {
        name: json.dumps(body, indent=2, sort_keys=False) + "\n" for name, body in boards.items()
    }


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
