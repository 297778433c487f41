"""Context features over REST, in process on SQLite and PostgreSQL: strict validation of the
declaration and of each decide's context (422 naming the feature and the allowed values), the
decision logs its context, feedback updates that context's statistics, each context learns its
own best arm, and the report shows the contexts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests._support.api import WORKLOADS, create_workload, give_feedback

ARMS = [{"name": "small", "model": "m-small"}, {"name": "large", "model": "m-large"}]
FEATURES = {"tier": ["free", "pro"], "region": ["eu", "us"]}
# The best arm differs by tier: free users are served well by the small model, pro by the large.
QUALITY = {("free", "small"): 0.9, ("free", "large"): 0.4,
           ("pro", "small"): 0.3, ("pro", "large"): 0.95}  # fmt: skip


def _decide(client: TestClient, context: Mapping[str, Any] | None) -> Any:
    body = {} if context is None else {"context": context}
    return client.post(f"{WORKLOADS}/ctx/decide", json=body)


def test_declaration_is_validated(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for features, field in (
        ({"Tier": ["x"]}, "context_features"),
        ({"tier": []}, "context_features"),
        ({"a": ["x"], "b": ["x"], "c": ["x"], "d": ["x"], "e": ["x"]}, "context_features"),
        ({"tier": ["a,b"]}, "context_features"),
        ({"tier": [1]}, "context_features"),
    ):
        answer = client.post(WORKLOADS, json={"name": "bad", "arms": ARMS,
                                              "context_features": features})  # fmt: skip
        assert answer.status_code == 422, answer.text
        assert field in answer.text
    too_many = {f"f{i}": [f"v{j}" for j in range(16)] for i in range(3)}
    answer = client.post(WORKLOADS, json={"name": "bad", "arms": ARMS,
                                          "context_features": too_many})  # fmt: skip
    assert answer.status_code == 422
    assert "4096 contexts; at most 256" in answer.json()["error"]["message"]


def test_contexts_learn_their_own_best_arm(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    create_workload(client, "ctx", ARMS, context_features=FEATURES, context_pooling=2.0)
    shown = client.get(f"{WORKLOADS}/ctx").json()
    assert shown["context_features"] == FEATURES
    assert shown["context_pooling"] == 2.0
    for context, says in (
        ({"tier": "gold", "region": "eu"}, "context.tier is 'gold', not one of its declared "
         "values: free, pro"),
        ({"tier": "pro"}, "missing feature 'region' (one of eu, us)"),
        ({"tier": "pro", "region": "eu", "x": "y"}, "undeclared feature(s) 'x'"),
    ):  # fmt: skip
        answer = _decide(client, context)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_context"
        assert says in answer.json()["error"]["message"]
    assert _decide(client, None).status_code == 200  # no context: the workload level
    for index in range(240):
        tier = ("free", "pro")[index % 2]
        decision = _decide(client, {"tier": tier, "region": "eu"}).json()
        quality = QUALITY[(tier, decision["arm"])]
        give_feedback(client, decision["decision_id"],
                      {"quality": quality, "cost_usd": 0.001, "latency_ms": 100.0})  # fmt: skip
    report = client.get(f"{WORKLOADS}/ctx/report").json()
    contexts = {c["context"]: c for c in report["contexts"]}
    assert set(contexts) == {"tier=free,region=eu", "tier=pro,region=eu"}
    assert contexts["tier=free,region=eu"]["best_arm"] == "small"
    assert contexts["tier=pro,region=eu"]["best_arm"] == "large"
    assert sum(c["feedback"] for c in contexts.values()) == 240
    # the snapshot decides by context: mostly small for free users, large for pro users
    for tier, best in (("free", "small"), ("pro", "large")):
        arms = [_decide(client, {"tier": tier, "region": "eu"}).json()["arm"] for _ in range(40)]
        assert arms.count(best) >= 34, (tier, arms)
    # a PATCH that drops the features stops contextual decisions (stale contexts are ignored)
    patched = client.patch(f"{WORKLOADS}/ctx", json={"context_features": {}})
    assert patched.status_code == 200, patched.text
    assert _decide(client, {"anything": "goes"}).status_code == 200
    assert client.get(f"{WORKLOADS}/ctx/report").json()["contexts"] == []


@pytest.mark.parametrize("pooling", [-1, 1e9, "5", None])
def test_pooling_is_bounded(make_client: Callable[..., TestClient], pooling: Any) -> None:
    client = make_client()
    answer = client.post(WORKLOADS, json={"name": "bad", "arms": ARMS,
                                          "context_pooling": pooling})  # fmt: skip
    assert answer.status_code == 422
    assert "context_pooling" in answer.text
