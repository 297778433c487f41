"""Prometheus metrics, served on their own port (``server.metrics_port``), nothing else there.

They live in this service's own registry, not prometheus_client's global one: another service's
package in the same process (the repository's test run imports them all) may define the same
metric names. Labels are bounded: the route template, never the raw path.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # process_*, python_*
    REGISTRY.register(_collector)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests handled.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration.",
    ["method", "route"],
    registry=REGISTRY,
)
