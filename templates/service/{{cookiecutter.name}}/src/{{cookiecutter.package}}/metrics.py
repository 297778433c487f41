"""Prometheus metrics, served on their own port (``server.metrics_port``), nothing else there.

Labels are bounded: the route template, never the raw path.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration.", ["method", "route"]
)
