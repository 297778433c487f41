"""``POST /api/v1/workloads/{name}/evaluate``: off-policy estimates of candidate policies on the
workload's logged decisions, in process on SQLite and PostgreSQL — known arm qualities, so the
estimates can be checked — and every refusal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests._support.api import create_workload, round_trips

ARMS = [{"name": "good", "model": "m-good"}, {"name": "poor", "model": "m-poor"}]
QUALITY = {"good": 0.9, "poor": 0.3}


@pytest.fixture
def logged(make_client: Callable[..., TestClient]) -> TestClient:
    """A workload with 120 logged decisions (epsilon-greedy with epsilon 1: each arm with
    probability 1/2) whose feedback gives each arm its quality exactly."""
    client = make_client()
    create_workload(
        client, "ope", ARMS, strategy="epsilon_greedy", strategy_params={"epsilon": 1.0}
    )
    round_trips(client, "ope", 120, _exact_quality)
    return client


def _exact_quality(_index: int, decision: Mapping[str, Any]) -> Mapping[str, float]:
    return {"quality": QUALITY[decision["arm"]], "cost_usd": 0.0, "latency_ms": 50.0}


def _evaluate(client: TestClient, candidate: dict[str, Any], **extra: Any) -> Any:
    return client.post("/api/v1/workloads/ope/evaluate", json={"candidate": candidate, **extra})


def test_a_fixed_arm_is_estimated_at_its_true_value(logged: TestClient) -> None:
    for arm, quality in QUALITY.items():
        answer = _evaluate(logged, {"arm": arm})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["candidate"] == {arm: 1.0}
        assert body["outcomes"] == 120
        assert 30 <= body["effective_sample_size"] <= 120
        for estimator in ("snips", "dr"):  # every outcome of the arm has exactly this reward
            assert body[estimator]["value"] == pytest.approx(quality)
        lo, hi = body["ips"]["ci95"]
        assert lo <= quality <= hi
    logged_value = _evaluate(logged, {"arm": "good"}).json()["logged"]["value"]
    assert QUALITY["poor"] < logged_value < QUALITY["good"]


def test_a_changed_workload_is_estimated_from_its_probabilities(logged: TestClient) -> None:
    answer = _evaluate(logged, {"strategy": "epsilon_greedy", "strategy_params": {"epsilon": 0.2}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["candidate"]["good"] == pytest.approx(0.9)  # greedy on good, 0.2 spread evenly
    assert body["dr"]["value"] == pytest.approx(0.9 * 0.9 + 0.1 * 0.3)
    # an objective that prices latency lowers every value by the same 50 ms
    priced = _evaluate(logged, {"arm": "good", "objective": {"latency_weight": 2.0}}).json()
    assert priced["dr"]["value"] == pytest.approx(0.9 - 2.0 * 0.05)
    kept = _evaluate(logged, {"arms": ["good", "poor"], "strategy": "fixed",
                              "strategy_params": {"arm": "poor"}})  # fmt: skip
    assert kept.json()["candidate"] == {"good": 0.0, "poor": 1.0}


REFUSALS = [
    ({"arm": "new-arm"}, "unsupported_candidate", "not an arm of workload 'ope'"),
    ({"arms": ["good", "new-arm"]}, "unsupported_candidate", "send it traffic first"),
    ({"strategy": "ucb", "strategy_params": {"c": -1}}, "invalid_workload", "c"),
    ({"strategy": "fixed"}, "invalid_workload", "strategy_params.arm"),
]


def test_refusals_and_validation(
    logged: TestClient, make_client: Callable[..., TestClient]
) -> None:
    for candidate, code, says in REFUSALS:
        answer = _evaluate(logged, candidate)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == code
        assert says in answer.json()["error"]["message"]
    assert _evaluate(logged, {"arm": None}).status_code == 422
    assert _evaluate(logged, {"arm": "good"}, limit=10).status_code == 422
    assert _evaluate(logged, {"arms": []}).status_code == 422
    assert logged.post("/api/v1/workloads/nope/evaluate", json={"candidate": {}}).status_code == 404
    reader = make_client(key="reader")  # a read key may evaluate (same database)
    assert (
        reader.post(
            "/api/v1/workloads/ope/evaluate", json={"candidate": {"arm": "good"}}
        ).status_code
        == 200
    )


def test_too_little_evidence_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.post("/api/v1/workloads", json={"name": "ope", "arms": ARMS}).status_code == 201
    answer = _evaluate(client, {"arm": "good"})
    assert answer.status_code == 422
    assert "too few outcomes with feedback (good: 0" in answer.json()["error"]["message"]


def test_promotion_can_require_an_evaluation(logged: TestClient) -> None:
    """With promotion.require_evaluation, a full promotion needs the logs' support and an arm
    not estimated clearly worse than the logged policies; a canary needs neither."""
    path = "/api/v1/workloads/ope"
    assert logged.get(path).json()["promotion"] == {"require_evaluation": False}
    patched = logged.patch(path, json={"promotion": {"require_evaluation": True}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["promotion"] == {"require_evaluation": True}

    worse = logged.post(f"{path}/promote", json={"arm": "poor"})
    assert worse.status_code == 409, worse.text
    assert worse.json()["error"]["code"] == "evaluation_refuses"
    assert "below the logged policies'" in worse.json()["error"]["message"]
    assert logged.post(f"{path}/promote", json={"arm": "good"}).status_code == 200
    canary = logged.post(f"{path}/promote", json={"arm": "poor", "canary_percent": 10})
    assert canary.status_code == 200, canary.text


def test_promotion_without_evidence_is_refused_when_required(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    body = {"name": "ope", "arms": ARMS, "promotion": {"require_evaluation": True}}
    assert client.post("/api/v1/workloads", json=body).status_code == 201
    refused = client.post("/api/v1/workloads/ope/promote", json={"arm": "good"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "evaluation_required"
    assert "promote it as a canary" in refused.json()["error"]["message"]
    assert client.patch("/api/v1/workloads/ope", json={"promotion": None}).status_code == 422
