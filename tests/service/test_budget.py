"""Budgets over REST, in process on SQLite and PostgreSQL: a workload's paced daily budget
(validated strictly), today's spend from the feedback table, the report's pacing and evaluation
sections, and decisions shifting to the cheaper arm once the spend runs ahead of plan."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.engine import MAX_DAILY_BUDGET_USD
from llm_optimizer_service.engine.pacing import GAIN, MAX_MULTIPLIER, MIN_DAY_FRACTION

from tests._support.api import WORKLOADS, create_workload, round_trips

ARMS = [{"name": "large", "model": "m-large"}, {"name": "small", "model": "m-small"}]
# small costs a tenth of large, and enough that the round trips below pass a $1 day whichever
# arms they get: once spend is ahead of the day's plan, pacing sends every decision to small, so
# a test that needed several large ones could stall below $1.
OUTCOME = {"large": {"quality": 0.9, "cost_usd": 0.5, "latency_ms": 800.0},
           "small": {"quality": 0.7, "cost_usd": 0.05, "latency_ms": 200.0}}  # fmt: skip


def _outcome(_index: int, decision: Mapping[str, Any]) -> Mapping[str, float]:
    return OUTCOME[decision["arm"]]


def _report(client: TestClient, name: str) -> dict[str, Any]:
    answer = client.get(f"{WORKLOADS}/{name}/report")
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def _share(client: TestClient, name: str, arm: str, decisions: int = 100) -> float:
    chosen = [client.post(f"{WORKLOADS}/{name}/decide").json()["arm"] for _ in range(decisions)]
    return chosen.count(arm) / decisions


def test_budget_is_paced_from_todays_spend(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    create_workload(client, "paced", ARMS, budget={"daily_usd": 1})
    create_workload(client, "unpaced", ARMS)
    assert client.get(f"{WORKLOADS}/paced").json()["budget"] == {"daily_usd": 1.0}
    assert client.get(f"{WORKLOADS}/unpaced").json()["budget"] is None

    fresh = _report(client, "paced")
    assert fresh["pacing"]["daily_usd"] == 1.0
    assert fresh["pacing"]["spent_usd"] == 0.0
    assert fresh["pacing"]["multiplier"] == 1.0
    assert fresh["pacing"]["paced_cost_weight"] == 0.0
    assert fresh["evaluation"] == {
        "require_evaluation": False,
        "latest": None,
        "how": "POST /api/v1/workloads/paced/evaluate (CLI: llm-optimizer evaluate paced) "
        "estimates a candidate on the logged decisions; each evaluation is stored and the "
        "latest shown here",
    }
    assert _report(client, "unpaced")["pacing"] is None

    decisions = round_trips(client, "paced", 30, _outcome)
    round_trips(client, "unpaced", 30, _outcome)
    pacing = _report(client, "paced")["pacing"]
    # the paced workload's own feedback only, summed since UTC midnight
    paced_spend = pacing["spent_usd"]
    assert paced_spend == pytest.approx(sum(OUTCOME[d["arm"]]["cost_usd"] for d in decisions))
    assert paced_spend > 1.0  # 30 round trips at $0.05 at least
    assert 1.0 * MIN_DAY_FRACTION <= pacing["planned_usd"] <= 1.0
    assert pacing["ratio"] == pytest.approx(paced_spend / pacing["planned_usd"])
    expected = min(MAX_MULTIPLIER, 1 + GAIN * (pacing["ratio"] - 1))
    assert pacing["multiplier"] == pytest.approx(expected)
    assert pacing["cost_weight"] == 0.0
    assert pacing["reference"] > 0
    assert pacing["paced_cost_weight"] == pytest.approx(
        pacing["reference"] * (pacing["multiplier"] - 1)
    )

    # the snapshot is rebuilt with the paced weight: traffic moves to the cheaper arm, while
    # the unbudgeted workload (quality only) keeps the better, dearer one
    deadline = time.monotonic() + 10
    while _share(client, "paced", "small", 20) < 0.9 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _share(client, "paced", "small") > 0.9
    assert _share(client, "unpaced", "large") > 0.7


def test_budget_patch_sets_changes_and_removes(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    create_workload(client, "patched", ARMS)
    changed = client.patch(f"{WORKLOADS}/patched", json={"budget": {"daily_usd": 2.5}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["budget"] == {"daily_usd": 2.5}
    assert _report(client, "patched")["pacing"]["daily_usd"] == 2.5
    kept = client.patch(f"{WORKLOADS}/patched", json={"strategy": "ucb"})
    assert kept.json()["budget"] == {"daily_usd": 2.5}
    removed = client.patch(f"{WORKLOADS}/patched", json={"budget": None})
    assert removed.status_code == 200, removed.text
    assert removed.json()["budget"] is None
    assert _report(client, "patched")["pacing"] is None


BAD_BUDGETS: list[tuple[Any, str]] = [
    ({"daily_usd": 0}, "greater than 0"),
    ({"daily_usd": -1.5}, "greater than 0"),
    ({"daily_usd": MAX_DAILY_BUDGET_USD * 10}, "less than or equal to"),
    ({"daily_usd": "5"}, "valid number"),
    ({"daily_usd": True}, "valid number"),
    ({"daily_usd": None}, "valid number"),
    ({}, "Field required"),
    ({"daily_usd": 5, "monthly_usd": 100}, "Extra inputs are not permitted"),
    (5, "valid dictionary"),
    ([{"daily_usd": 5}], "valid dictionary"),
]


@pytest.mark.parametrize(("budget", "fix"), BAD_BUDGETS)
def test_bad_budgets_are_422_naming_the_field(
    make_client: Callable[..., TestClient], budget: Any, fix: str
) -> None:
    client = make_client()
    create_workload(client, "target", ARMS, exist_ok=True)
    for method, url, body in (
        ("POST", WORKLOADS, {"name": "bad", "arms": ARMS, "budget": budget}),
        ("PATCH", f"{WORKLOADS}/target", {"budget": budget}),
    ):
        answer = client.request(method, url, json=body)
        assert answer.status_code == 422, answer.text
        details = answer.json()["detail"]
        assert all(item["loc"][:2] == ["body", "budget"] for item in details), details
        assert any(fix in item["msg"] for item in details), details
    assert client.get(f"{WORKLOADS}/bad").status_code == 404
    assert client.get(f"{WORKLOADS}/target").json()["budget"] is None


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_budgets_are_422(make_client: Callable[..., TestClient], literal: str) -> None:
    client = make_client()
    body = json.dumps({"name": "nonfinite", "arms": ARMS}).rstrip("}")
    raw = f'{body}, "budget": {{"daily_usd": {literal}}}}}'
    answer = client.post(WORKLOADS, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert [item["loc"] for item in answer.json()["detail"]] == [["body", "budget", "daily_usd"]]
