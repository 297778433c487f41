"""Prometheus metrics, with the contract's names and bounded labels (workload, arm, model, route,
method, status — never a request id or a user). Served on their own port by ``server.py``.

The metric objects live in the default registry (which also carries the ``process_*`` and
``python_*`` collectors), created once at import.

With ``server.workers`` above 1 (:mod:`llm_optimizer_service.supervisor`) every worker starts
with ``PROMETHEUS_MULTIPROC_DIR`` set to the supervisor's private directory, so prometheus_client
keeps the values in files there, and the supervisor serves them summed over the workers
(:func:`multiprocess_registry`): counters and histograms add up, the per-workload gauges show
the most recent value any worker wrote (they all compute it from the same database), the pool
gauges add up over the live workers. With one worker (the default) none of this applies.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
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
QUALITY = Gauge(
    "optimization_quality_score",
    "Mean quality of the recent feedback.",
    ["workload"],
    multiprocess_mode="mostrecent",
)
DRIFT = Gauge(
    "drift_score",
    "Drift score of the workload (0..1).",
    ["workload"],
    multiprocess_mode="mostrecent",
)
CANARY = Gauge(
    "canary_deployment_status",
    "Current policy per workload: 1 for the active status (none, canary, promoted, failed = "
    "a canary clearly worse than another arm), else 0.",
    ["workload", "status"],
    multiprocess_mode="mostrecent",
)
CANARY_STATUSES = ("none", "canary", "promoted", "failed")
QUARANTINED = Gauge(
    "optimization_workload_quarantined",
    "Parts of a workload's stored state that cannot be used and are quarantined (its spec, or "
    "an arm's statistics) until `llm-optimizer-service db repair` or a fix; 0 when none.",
    ["workload"],
    multiprocess_mode="mostrecent",
)
DB_CONNECTIONS_ACTIVE = Gauge(
    "db_connections_active", "Database connections checked out.", multiprocess_mode="livesum"
)
DB_CONNECTIONS_MAX = Gauge(
    "db_connections_max", "Largest number of database connections.", multiprocess_mode="livesum"
)
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
    if in_multiprocess_mode():
        # a function gauge is read at scrape time in this process, which the supervisor's
        # scrape never reaches: keep the count in the shared file instead
        event.listen(pool, "checkout", lambda *_: DB_CONNECTIONS_ACTIVE.inc())
        event.listen(pool, "checkin", lambda *_: DB_CONNECTIONS_ACTIVE.dec())
    else:
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


MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def in_multiprocess_mode() -> bool:
    """True in a worker of ``server.workers`` > 1 (values kept in the shared directory)."""
    return bool(os.environ.get(MULTIPROC_DIR_ENV))


def multiprocess_registry(directory: str, pids: Callable[[], Iterable[int]]) -> CollectorRegistry:
    """What the supervisor serves on /metrics: every worker's metrics summed from ``directory``,
    and ``process_*`` summed over the supervisor and the live workers ``pids()`` returns."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(_ProcessesCollector(pids))
    return registry


# process_* families that add up over processes; the others (start time, fd limit) are the
# supervisor's own.
_SUMMED = frozenset(
    {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
    }
)


class _ProcessesCollector:
    """``process_*`` of the whole service: the supervisor and its workers."""

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids

    def collect(self) -> Iterator[Metric]:
        own = {m.name: m for m in ProcessCollector(registry=None).collect()}
        for pid in self._pids():
            try:
                theirs = list(ProcessCollector(pid=_constant(pid), registry=None).collect())
            except OSError:  # pragma: no cover - the worker exited meanwhile
                continue
            for metric in theirs:
                mine = own.get(metric.name)
                if metric.name in _SUMMED and mine is not None and mine.samples and metric.samples:
                    sample = mine.samples[0]
                    mine.samples[0] = sample._replace(value=sample.value + metric.samples[0].value)
        yield from own.values()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid
