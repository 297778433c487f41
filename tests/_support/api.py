"""The REST calls many tests repeat: create a workload, then decide and give feedback, and the
report's fields. The calls take any ``httpx.Client`` (``RunningService.client()`` or an
in-process ``TestClient``) and assert that each step succeeds."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

WORKLOADS = "/api/v1/workloads"
FEEDBACK = "/api/v1/feedback"
ARMS: list[dict[str, Any]] = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]

# The fields of the engine's report (engine/report.py) and of each arm in it; the REST report
# adds the contexts (workloads with context features) and notes on quarantined stored state.
ENGINE_REPORT_FIELDS = {
    "workload",
    "strategy",
    "best_arm",
    "arms",
    "pareto_front",
    "drift",
    "ab_test",
}
REPORT_FIELDS = ENGINE_REPORT_FIELDS | {"contexts", "notes"}
ARM_FIELDS = {
    "name",
    "decisions",
    "feedback",
    "mean_quality",
    "mean_cost_usd",
    "mean_latency_ms",
    "mean_reward",
    "ci95",
    "probability_best",
}

# What a round trip reports for the index-th decision: quality, cost_usd and latency_ms.
Outcome = Callable[[int, Mapping[str, Any]], Mapping[str, float]]


def steady_outcome(_index: int, _decision: Mapping[str, Any]) -> Mapping[str, float]:
    """The same plausible outcome for every decision."""
    return {"quality": 0.8, "cost_usd": 0.002, "latency_ms": 120.0}


def create_workload(
    client: httpx.Client,
    name: str,
    arms: Sequence[Mapping[str, Any]] = ARMS,
    *,
    exist_ok: bool = False,
    **fields: Any,
) -> None:
    """POST the workload (``fields``: strategy, strategy_params...); 201, or 409 if ``exist_ok``."""
    created = client.post(WORKLOADS, json={"name": name, "arms": list(arms), **fields})
    assert created.status_code in ((201, 409) if exist_ok else (201,)), created.text


def decide(client: httpx.Client, workload: str) -> dict[str, Any]:
    """One decision (no request body); the answer's JSON."""
    response = client.post(f"{WORKLOADS}/{workload}/decide")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def give_feedback(client: httpx.Client, decision_id: str, outcome: Mapping[str, float]) -> None:
    """Feedback on one decision, accepted (202)."""
    answer = client.post(FEEDBACK, json={"decision_id": decision_id, **outcome})
    assert answer.status_code == 202, answer.text


def round_trips(
    client: httpx.Client, workload: str, count: int, outcome: Outcome = steady_outcome
) -> list[dict[str, Any]]:
    """``count`` decisions on ``workload``, each followed by its feedback; the decisions."""
    decisions = []
    for index in range(count):
        decision = decide(client, workload)
        give_feedback(client, decision["decision_id"], outcome(index, decision))
        decisions.append(decision)
    return decisions
