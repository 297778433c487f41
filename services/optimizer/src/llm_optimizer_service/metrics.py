"""Prometheus metrics, with the contract's names and bounded labels (workload, arm, model, route,
method, status — never a request id or a user). Served on their own port by ``server.py``.

The metric objects live in the default registry (which also carries the ``process_*`` and
``python_*`` collectors), created once at import.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from sqlalchemy import Engine, event

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter("optimization_decisions_total", "Decisions handed out.", ["workload", "arm"])
FEEDBACK = Counter(
    "optimization_feedback_total",
    "Feedback events accepted (duplicates not counted).",
    ["workload", "arm"],
)
CYCLE_DURATION = Histogram(
    "optimization_cycle_duration_seconds",
    "Duration of the periodic re-estimation cycle (reload shared statistics, rebuild policies).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COST = Counter(
    "optimization_cost_total", "LLM spend reported through feedback, in USD.", ["workload", "model"]
)
QUALITY = Gauge("optimization_quality_score", "Mean quality of the recent feedback.", ["workload"])
DRIFT = Gauge("drift_score", "Drift score of the workload (0..1).", ["workload"])
CANARY = Gauge(
    "canary_deployment_status",
    "Current policy per workload: 1 for the active status (none, canary, promoted, failed = "
    "a canary clearly worse than another arm), else 0.",
    ["workload", "status"],
)
CANARY_STATUSES = ("none", "canary", "promoted", "failed")
QUARANTINED = Gauge(
    "optimization_workload_quarantined",
    "Parts of a workload's stored state that cannot be used and are quarantined (its spec, or "
    "an arm's statistics) until `llm-optimizer-service db repair` or a fix; 0 when none.",
    ["workload"],
)
DB_CONNECTIONS_ACTIVE = Gauge("db_connections_active", "Database connections checked out.")
DB_CONNECTIONS_MAX = Gauge("db_connections_max", "Largest number of database connections.")
DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds", "Database statement duration.", buckets=LATENCY_BUCKETS
)


def set_canary_status(workload: str, status: str) -> None:
    for candidate in CANARY_STATUSES:
        CANARY.labels(workload=workload, status=candidate).set(1.0 if candidate == status else 0.0)


def forget_workload(workload: str, arms: list[str], models: list[str]) -> None:
    """Drop a deleted workload's series so label sets stay bounded by live workloads."""
    for metric in (QUALITY, DRIFT, QUARANTINED):
        _remove(metric, workload)
    for status in CANARY_STATUSES:
        _remove(CANARY, workload, status)
    for arm in arms:
        _remove(DECISIONS, workload, arm)
        _remove(FEEDBACK, workload, arm)
    for model in models:
        _remove(COST, workload, model)


def forget_quarantine(workload: str) -> None:
    _remove(QUARANTINED, workload)


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def instrument_engine(engine: Engine, pool_size: int, max_overflow: int) -> None:
    """Time every statement and expose the pool's usage."""
    DB_CONNECTIONS_MAX.set(pool_size + max_overflow)
    pool: Any = engine.pool
    checked_out: Callable[[], int] = getattr(pool, "checkedout", lambda: 0)
    DB_CONNECTIONS_ACTIVE.set_function(lambda: float(checked_out()))

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, *_: Any) -> None:  # SQLAlchemy passes cursor, statement, ... too
        conn.info.setdefault("query_start", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _stop(conn: Any, *_: Any) -> None:
        starts = conn.info.get("query_start")
        if starts:
            DB_QUERY_DURATION.observe(time.perf_counter() - starts.pop())


def generate_latest(registry: CollectorRegistry = REGISTRY) -> bytes:
    return _generate_latest(registry)
