"""Helpers for the monitoring tests: traffic that makes every labelled series exist, scrapes."""

from __future__ import annotations

import httpx

from tests._support.service import RunningService


def drive_traffic(service: RunningService, workload: str = "monitoring-check") -> None:
    """Create a workload, decide and report feedback, so every labelled series exists."""
    with service.client() as client:
        created = client.post(
            "/api/v1/workloads",
            json={
                "name": workload,
                "arms": [
                    {
                        "name": "small",
                        "model": "small-model",
                        "price": {"input_per_1k": 0.1, "output_per_1k": 0.2},
                    },
                    {
                        "name": "large",
                        "model": "large-model",
                        "price": {"input_per_1k": 1.0, "output_per_1k": 2.0},
                    },
                ],
            },
        )
        assert created.status_code in (201, 409), created.text
        for _ in range(6):
            decision = client.post(f"/api/v1/workloads/{workload}/decide")
            assert decision.status_code == 200, decision.text
            feedback = client.post(
                "/api/v1/feedback",
                json={
                    "decision_id": decision.json()["decision_id"],
                    "quality": 0.8,
                    "cost_usd": 0.002,
                    "latency_ms": 120.0,
                },
            )
            assert feedback.status_code == 202, feedback.text
        assert client.get("/api/v1/workloads/does-not-exist").status_code == 404


def scrape(url: str) -> str:
    """One scrape of a /metrics endpoint."""
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.text
