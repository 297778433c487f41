"""``POST /api/v1/workloads/{name}/evaluate``: off-policy estimates of candidate policies on the
workload's logged decisions, in process on SQLite and PostgreSQL — known arm qualities, so the
estimates can be checked — and every refusal; each result stored (the latest in the report, a
bounded history), a damaged stored one noted in the report instead of failing it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from llm_optimizer_service.auth import ApiKey, digest
from llm_optimizer_service.evaluations import EVALUATIONS_KEPT
from llm_optimizer_service.storage.db import make_engine

from tests._support.api import create_workload, round_trips
from tests.service.conftest import Keys

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


def _key_id(key: str) -> str:
    return ApiKey(digest(key), frozenset()).key_id


def _latest(client: TestClient) -> Any:
    answer = client.get("/api/v1/workloads/ope/report")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _sql(url: str, statement: str, **params: Any) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def _ids(url: str) -> list[int]:
    return [row[0] for row in _sql(url, "SELECT id FROM evaluations ORDER BY id")]


def test_each_evaluation_is_stored_and_the_report_shows_the_latest(
    logged: TestClient, make_client: Callable[..., TestClient], keys: Keys, database_url: str
) -> None:
    report = _latest(logged)
    assert report["evaluation"]["latest"] is None
    assert report["notes"] == []

    answer = _evaluate(logged, {"arm": "good"}, limit=500)
    assert answer.status_code == 200, answer.text
    assert answer.json()["verdict"] == "better"
    latest = _latest(logged)["evaluation"]["latest"]
    estimate = answer.json()
    assert latest["candidate"] == {"arm": "good"}
    assert latest["description"] == "arm good fixed (what promoting it would do)"
    assert latest["probabilities"] == {"good": 1.0}
    assert latest["limit"] == 500
    assert latest["outcomes"] == 120
    assert latest["effective_sample_size"] == pytest.approx(estimate["effective_sample_size"])
    for name in ("ips", "snips", "dr", "logged"):
        assert latest[name]["value"] == pytest.approx(estimate[name]["value"])
        assert latest[name]["ci95"] == pytest.approx(estimate[name]["ci95"])
    assert latest["verdict"] == "better"
    assert latest["evaluated_by"] == _key_id(keys.admin)
    assert latest["source"] == "evaluate"
    assert latest["evaluated_at"].startswith("20")

    # a read-scoped caller's evaluation is stored too (derived data), under its key id
    reader = make_client(key="reader")
    changed = {"strategy": "epsilon_greedy", "strategy_params": {"epsilon": 0.2}}
    assert _evaluate(reader, changed).status_code == 200
    latest = _latest(reader)["evaluation"]["latest"]
    assert latest["candidate"] == changed
    assert latest["description"] == (
        'the workload with strategy "epsilon_greedy"; strategy_params {"epsilon":0.2}'
    )
    assert latest["evaluated_by"] == _key_id(keys.reader)
    assert latest["verdict"] == "better"  # 0.84 against the logged 0.6
    assert _evaluate(reader, {}).json()["verdict"] == "inconclusive"  # the policy as it is
    assert _latest(reader)["evaluation"]["latest"]["description"] == (
        "the workload as it is (its current policy)"
    )
    worse = _evaluate(reader, {"arm": "poor"})
    assert worse.json()["verdict"] == "worse"

    # a refused candidate stores nothing: the latest stays
    stored = _ids(database_url)
    assert _evaluate(reader, {"arm": "new-arm"}).status_code == 422
    assert _evaluate(reader, {"strategy": "fixed"}).status_code == 422
    assert _ids(database_url) == stored
    assert _latest(reader)["evaluation"]["latest"]["candidate"] == {"arm": "poor"}


def test_the_history_is_bounded_and_goes_with_the_workload(
    logged: TestClient, database_url: str
) -> None:
    for _ in range(EVALUATIONS_KEPT + 3):
        assert _evaluate(logged, {"arm": "good"}).status_code == 200
    ids = _ids(database_url)
    assert len(ids) == EVALUATIONS_KEPT  # the most recent kept
    assert _latest(logged)["evaluation"]["latest"]["candidate"] == {"arm": "good"}
    assert logged.delete("/api/v1/workloads/ope").status_code == 204
    assert _ids(database_url) == []


def test_the_promotion_gate_stores_its_evaluation(logged: TestClient, keys: Keys) -> None:
    path = "/api/v1/workloads/ope"
    assert logged.patch(path, json={"promotion": {"require_evaluation": True}}).status_code == 200
    assert logged.post(f"{path}/promote", json={"arm": "poor"}).status_code == 409
    evaluation = _latest(logged)["evaluation"]
    assert evaluation["require_evaluation"] is True
    latest = evaluation["latest"]
    assert (latest["source"], latest["verdict"]) == ("promote", "worse")
    assert latest["candidate"] == {"arm": "poor"}
    assert latest["evaluated_by"] == _key_id(keys.admin)


def _damage(result: dict[str, Any], key: str, value: Any) -> Any:
    if key == "":
        return value
    return {**result, key: value}


DAMAGE = [
    pytest.param("verdict", "great", "verdict", id="unknown-verdict"),
    pytest.param("outcomes", "many", "outcomes", id="ill-typed"),
    pytest.param("dr", {"value": 0.5}, "dr.ci95", id="missing-field"),
    pytest.param("surprise", 1, "surprise", id="unknown-field"),
    pytest.param("", ["a", "list"], "not an object", id="not-an-object"),
]


@pytest.mark.parametrize(("key", "value", "says"), DAMAGE)
def test_a_damaged_stored_evaluation_is_noted_not_fatal(
    logged: TestClient, database_url: str, key: str, value: Any, says: str
) -> None:
    assert _evaluate(logged, {"arm": "good"}).status_code == 200
    ((ident, raw),) = _sql(database_url, "SELECT id, CAST(result AS TEXT) FROM evaluations")
    damaged = json.dumps(_damage(json.loads(raw), key, value))
    cast = "CAST(:raw AS JSON)" if database_url.startswith("postgresql") else ":raw"
    _sql(database_url, f"UPDATE evaluations SET result = {cast}", raw=damaged)
    report = _latest(logged)
    assert report["evaluation"]["latest"] is None
    (note,) = report["notes"]
    assert f"the latest stored evaluation (id {ident}) cannot be read" in note
    assert says in note
    assert "evaluate again" in note
    assert report["arms"]  # the rest of the report stands
    # a new evaluation supersedes it; the damaged row is left alone
    assert _evaluate(logged, {"arm": "poor"}).status_code == 200
    report = _latest(logged)
    assert report["notes"] == []
    assert report["evaluation"]["latest"]["candidate"] == {"arm": "poor"}
    assert ident in _ids(database_url)


def test_stored_text_that_is_not_json_is_noted(logged: TestClient, database_url: str) -> None:
    """SQLite keeps JSON as text, which may be damaged into no JSON at all, or its time into no
    time; PostgreSQL's JSON type refuses the first on write."""
    assert _evaluate(logged, {"arm": "good"}).status_code == 200
    if database_url.startswith("postgresql"):
        with pytest.raises(sa.exc.DBAPIError, match="json"):
            _sql(database_url, "UPDATE evaluations SET result = CAST('{not json' AS JSON)")
        return
    _sql(database_url, "UPDATE evaluations SET result = '{not json'")
    report = _latest(logged)
    assert report["evaluation"]["latest"] is None
    assert "not JSON" in report["notes"][0]
    _sql(database_url, "UPDATE evaluations SET created_at = 'yesterday'")
    report = _latest(logged)
    assert report["evaluation"]["latest"] is None
    assert "unreadable row" in report["notes"][0]
