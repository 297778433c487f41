"""A synthetic workload driven through the REST API: every arm has a hidden true quality, cost
and latency; clients decide, draw an outcome from the chosen arm, and send it back as feedback.
Used for demos, smoke tests and the HTTP benchmark."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np

# name, model, true quality, true cost (USD), true latency (ms)
ARMS: tuple[tuple[str, str, float, float, float], ...] = (
    ("large", "gpt-large", 0.86, 0.0300, 1800.0),
    ("medium", "gpt-medium", 0.80, 0.0060, 900.0),
    ("small", "gpt-small", 0.64, 0.0008, 400.0),
)


class SimulationError(Exception):
    """The service refused or could not be reached; the message says what to fix."""


def workload_body(name: str, strategy: str) -> dict[str, Any]:
    return {
        "name": name,
        "strategy": strategy,
        "arms": [
            {"name": arm, "model": model, "provider": "simulated", "params": {"temperature": 0.2}}
            for arm, model, *_ in ARMS
        ],
    }


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise SimulationError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def run_simulation(
    url: str,
    api_key: str | None,
    workload: str,
    requests: int,
    concurrency: int,
    seed: int,
    strategy: str = "thompson",
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    truth = {arm: (quality, cost, latency) for arm, _, quality, cost, latency in ARMS}
    rng = np.random.default_rng(seed)
    chosen: dict[str, int] = dict.fromkeys(truth, 0)
    qualities: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=30, limits=limits
        ) as client:
            existing = await client.get(f"/api/v1/workloads/{workload}")
            if existing.status_code == 404:
                _check(
                    await client.post("/api/v1/workloads", json=workload_body(workload, strategy)),
                    "create workload",
                )
            else:
                _check(existing, "read workload")
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(requests):
                queue.put_nowait(index)

            async def client_loop() -> None:
                while True:
                    try:
                        queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    decision = _check(
                        await client.post(f"/api/v1/workloads/{workload}/decide"), "decide"
                    )
                    arm = decision["arm"]
                    if arm not in truth:
                        raise SimulationError(
                            f"workload {workload!r} has arm {arm!r} we do not simulate"
                        )
                    quality, cost, latency = truth[arm]
                    q = float(np.clip(rng.normal(quality, 0.08), 0.0, 1.0))
                    chosen[arm] += 1
                    qualities.append(q)
                    _check(
                        await client.post(
                            "/api/v1/feedback",
                            json={
                                "decision_id": decision["decision_id"],
                                "quality": q,
                                "cost_usd": float(max(rng.normal(cost, cost * 0.1), 0.0)),
                                "latency_ms": float(max(rng.normal(latency, latency * 0.2), 1.0)),
                            },
                        ),
                        "feedback",
                    )

            started = time.perf_counter()
            await asyncio.gather(*(client_loop() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            report = _check(await client.get(f"/api/v1/workloads/{workload}/report"), "report")
    except httpx.HTTPError as exc:
        raise SimulationError(f"cannot reach the service at {url}: {exc}") from exc
    oracle = max(truth, key=lambda arm: truth[arm][0])
    return {
        "workload": workload,
        "requests": requests,
        "seconds": round(elapsed, 3),
        "requests_per_second": requests / elapsed if elapsed else 0.0,
        "mean_quality": float(np.mean(qualities)) if qualities else 0.0,
        "best_arm": report.get("best_arm"),
        "oracle_arm": oracle,
        "arms": [
            {
                "name": arm,
                "true_quality": truth[arm][0],
                "true_cost_usd": truth[arm][1],
                "chosen": chosen[arm],
                "share": chosen[arm] / requests,
            }
            for arm in truth
        ],
    }
