"""Helpers for the monitoring tests: traffic that makes every labelled series exist, scrapes."""

from __future__ import annotations

import httpx

from tests._support.api import create_workload, round_trips
from tests._support.service import RunningService

PRICED_ARMS = [
    {"name": "small", "model": "small-model", "price": {"input_per_1k": 0.1, "output_per_1k": 0.2}},
    {"name": "large", "model": "large-model", "price": {"input_per_1k": 1.0, "output_per_1k": 2.0}},
]


def drive_traffic(service: RunningService, workload: str = "monitoring-check") -> None:
    """Create a workload, decide and report feedback, so every labelled series exists."""
    with service.client() as client:
        create_workload(client, workload, PRICED_ARMS, exist_ok=True)
        round_trips(client, workload, 6)
        assert client.get("/api/v1/workloads/does-not-exist").status_code == 404


def scrape(url: str) -> str:
    """One scrape of a /metrics endpoint."""
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.text
