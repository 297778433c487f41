"""decide's and feedback's own route handlers (``routes._DecideRoute``, ``routes._FeedbackRoute``)
and their hot path ahead of FastAPI (``hot_path.py``, what ``serve`` runs) answer exactly what
FastAPI's generic handler answers for their signatures: the same request, sent to the service's
app, to the app behind the hot path and to an app that serves the same endpoint function through
a plain ``APIRoute``, gets the same status, the same error body (422 items, 401/403/404/409/500
errors) and, for a decision or an acknowledgement, the same shape."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from llm_optimizer_service.api import create_app, errors, hot_path, routes
from llm_optimizer_service.api.middleware import RequestContextMiddleware
from prometheus_client import REGISTRY

from tests.service.conftest import Keys, make_settings

DECIDE = "/api/v1/workloads/{name}/decide"
FEEDBACK = "/api/v1/feedback"
ARMS = [
    {"name": f"arm-{i}", "model": f"model-{i}", "params": {"temperature": i / 10}} for i in range(3)
]


def _on_the_loop_of(running: TestClient, other: TestClient) -> TestClient:
    """``other`` sends its requests on ``running``'s event loop, the one its app's runtime was
    started on, as a server runs every request on one loop. A TestClient that is not entered
    runs each request on a loop of its own, which ends with the request; the runtime's group
    commit would be left with a task of that ended loop (feedback then waits forever)."""
    other.portal = running.portal
    return other


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Keys]]:
    keys = Keys(*(f"k-{role}-{secrets.token_hex(12)}" for role in ("admin", "writer", "reader")))
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", keys)
    app = create_app(settings)
    with TestClient(app) as client:
        runtime = app.state.runtime
        reference = FastAPI()
        reference.state.runtime = runtime
        errors.install(reference)
        reference.add_middleware(
            RequestContextMiddleware,
            max_body=settings.server.max_request_bytes,
            keys=runtime.keys,
            auth_prefix="/api/v1",
        )
        # the same endpoint function and signature, through FastAPI's generic handler
        reference.add_api_route(DECIDE, routes.decide, methods=["POST"])
        assert type(reference.routes[-1]) is APIRoute
        reference.add_api_route(FEEDBACK, routes.record_feedback, methods=["POST"], status_code=202)
        assert type(reference.routes[-1]) is APIRoute
        admin = keys.header(keys.admin)
        for name, extra in (("plain", {}), ("tiered", {"context_features": {"tier": ["a", "b"]}})):
            created = client.post(
                "/api/v1/workloads", json={"name": name, "arms": ARMS, **extra}, headers=admin
            )
            assert created.status_code == 201, created.text
        yield client, _on_the_loop_of(client, TestClient(reference)), keys


CASES: list[tuple[str, str, bytes | None]] = [
    # (key, workload, body); None sends no body at all
    ("writer", "plain", None),
    ("writer", "plain", b""),
    ("writer", "plain", b"{}"),
    ("writer", "plain", b'{"context": {"x": 1}}'),
    ("writer", "plain", b'{"session_id": "s-1"}'),
    ("writer", "plain", b'{"context": null, "session_id": null}'),
    ("writer", "tiered", b'{"context": {"tier": "a"}}'),
    ("writer", "tiered", b'{"context": {"tier": "z"}}'),  # 422 invalid_context
    ("writer", "plain", b'{"context": 5}'),
    ("writer", "plain", b'{"extra": 1}'),
    ("writer", "plain", b'{"session_id": 5}'),
    ("writer", "plain", b'{"session_id": ""}'),
    ("writer", "plain", b"null"),
    ("writer", "plain", b"[]"),
    ("writer", "plain", b'"text"'),
    ("writer", "plain", b"{not json"),
    ("writer", "plain", b'{"context": {"a": 1},}'),
    ("writer", "missing", b"{}"),  # 404
    ("reader", "plain", b"{}"),  # 403
    ("reader", "plain", b'{"context": 5}'),  # 403 before the body's 422
    ("reader", "plain", b"{not json"),  # the JSON decode error comes first, as in FastAPI
    ("none", "plain", b"{}"),  # 401
]


def _answer(client: TestClient, keys: Keys, key: str, workload: str, body: bytes | None) -> Any:
    headers = {} if key == "none" else keys.header(getattr(keys, key))
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = client.post(DECIDE.format(name=workload), content=body, headers=headers)
    payload = response.json()
    if response.status_code == 200:
        # the answer is written by hand: byte for byte what json.dumps (compact) writes
        assert response.text == json.dumps(payload, separators=(",", ":"))
        assert payload["arm"] in {arm["name"] for arm in ARMS}
        assert 0.0 < payload["propensity"] <= 1.0
        payload = {**payload, "decision_id": len(payload["decision_id"]), "arm": "?"}
        payload["propensity"] = "?"
        payload["config"] = sorted(payload["config"])
    return response.status_code, response.headers["content-type"], payload


@pytest.fixture
def hot(pair: tuple[TestClient, TestClient, Keys]) -> TestClient:
    """The service's app behind decide's hot path, as ``serve`` runs it (the runtime is the one
    ``pair`` started)."""
    app: Any = pair[0].app
    wrapped = hot_path.wrap(app, app.state.runtime.settings)
    assert wrapped is not app
    return _on_the_loop_of(pair[0], TestClient(wrapped))


@pytest.mark.parametrize(("key", "workload", "body"), CASES)
def test_decide_answers_as_fastapis_own_handler(
    pair: tuple[TestClient, TestClient, Keys],
    hot: TestClient,
    key: str,
    workload: str,
    body: bytes | None,
) -> None:
    service, reference, keys = pair
    expected = _answer(reference, keys, key, workload, body)
    assert _answer(service, keys, key, workload, body) == expected
    assert _answer(hot, keys, key, workload, body) == expected


def test_an_unexpected_error_is_the_apps_500(
    pair: tuple[TestClient, TestClient, Keys], hot: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, _, keys = pair
    runtime: Any = service.app.state.runtime  # type: ignore[attr-defined]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(runtime, "decide", broken)
    hot_answer = _answer(hot, keys, "writer", "plain", b"{}")
    assert hot_answer == (
        500,
        "application/json",
        {"error": {"code": "internal", "message": "internal error; see the service log"}},
    )
    # FastAPI's server-error middleware answers the same, then re-raises to the server
    raising = TestClient(service.app, raise_server_exceptions=False)
    assert _answer(raising, keys, "writer", "plain", b"{}") == hot_answer


def test_the_hot_path_counts_logs_and_tags_like_the_app(
    pair: tuple[TestClient, TestClient, Keys], hot: TestClient
) -> None:
    """The same request id answer, HTTP metric series (the route's template) and everything
    but decide passed to the app untouched."""
    _, _, keys = pair
    labels = {"method": "POST", "route": DECIDE, "status": "200"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0
    answer = hot.post(
        DECIDE.format(name="plain"),
        content=b"{}",
        headers={
            **keys.header(keys.writer),
            "X-Request-ID": "req-42",
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == "req-42"
    after = REGISTRY.get_sample_value("http_requests_total", labels)
    assert after == before + 1
    assert hot.get("/version").status_code == 200
    wrong = hot.get(DECIDE.format(name="plain"), headers=keys.header(keys.writer))
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    listed = hot.get("/api/v1/workloads", headers=keys.header(keys.reader))
    assert {w["name"] for w in listed.json()["items"]} >= {"plain", "tiered"}


def test_tracing_serves_decide_through_fastapi(pair: tuple[TestClient, TestClient, Keys]) -> None:
    """With tracing on, FastAPI's instrumentation makes each request's server span: no hot path."""
    app: Any = pair[0].app
    traced = app.state.runtime.settings.model_copy(
        update={"otel": app.state.runtime.settings.otel.model_copy(update={"endpoint": "http://x"})}
    )
    assert hot_path.wrap(app, traced) is app


def test_every_case_kind_is_covered(pair: tuple[TestClient, TestClient, Keys]) -> None:
    service, _, keys = pair
    statuses = {_answer(service, keys, *case)[0] for case in CASES}
    assert statuses == {200, 401, 403, 404, 422}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_naming_post(
    pair: tuple[TestClient, TestClient, Keys], method: str
) -> None:
    service, reference, keys = pair
    answers = [
        client.request(method, DECIDE.format(name="plain"), headers=keys.header(keys.writer))
        for client in (service, reference)
    ]
    assert [(a.status_code, a.headers.get("allow"), a.json()) for a in answers] == [
        (405, "POST", answers[1].json())
    ] * 2


def test_decide_is_served_ahead_of_the_router_and_documented_once(
    pair: tuple[TestClient, TestClient, Keys],
) -> None:
    service, _, _ = pair
    app: Any = service.app
    first = next(
        r
        for r in app.routes
        if not getattr(r, "path", "").startswith(("/docs", "/redoc", "/openapi"))
    )
    assert isinstance(first, APIRoute)
    assert first.path == DECIDE
    assert not first.include_in_schema
    paths = app.openapi()["paths"]
    assert list(paths[DECIDE]) == ["post"]
    assert paths[DECIDE]["post"]["operationId"] == "decide"
    assert "requestBody" in paths[DECIDE]["post"]


# (key, body); None sends no body at all. In a body, {fresh} is a decision made for this request
# alone (accepted), {used} one that already has feedback (duplicate), {unknown} none at all (404).
GOOD = '{{"decision_id": "{}", "quality": 0.8, "cost_usd": 0.001, "latency_ms": 120}}'
FEEDBACK_CASES: list[tuple[str, str | None]] = [
    ("writer", GOOD.format("{fresh}")),
    (
        "writer",
        '{"decision_id": "{fresh}", "quality": 1, "cost_usd": 0, "latency_ms": 0, '
        '"input_tokens": 10, "output_tokens": 20, "error": true}',
    ),
    ("writer", GOOD.format("{used}")),  # 202 duplicate
    ("writer", GOOD.format("{unknown}")),  # 404
    ("writer", None),
    ("writer", ""),
    ("writer", "{}"),
    ("writer", '{"decision_id": "{fresh}"}'),
    ("writer", '{"decision_id": "{fresh}", "quality": 2, "cost_usd": 0, "latency_ms": 0}'),
    ("writer", '{"decision_id": "{fresh}", "quality": "x", "cost_usd": 0, "latency_ms": 0}'),
    ("writer", '{"decision_id": "{fresh}", "quality": 1, "cost_usd": -1, "latency_ms": 0}'),
    ("writer", '{"decision_id": "{fresh}", "quality": 1, "cost_usd": 0, "latency_ms": 1e300}'),
    ("writer", '{"decision_id": "{fresh}", "quality": NaN, "cost_usd": 0, "latency_ms": 0}'),
    ("writer", '{"decision_id": "", "quality": 1, "cost_usd": 0, "latency_ms": 0}'),
    ("writer", '{"decision_id": 5, "quality": 1, "cost_usd": 0, "latency_ms": 0}'),
    (
        "writer",
        '{"decision_id": "{fresh}", "quality": 1, "cost_usd": 0, "latency_ms": 0, '
        '"input_tokens": -1}',
    ),
    (
        "writer",
        '{"decision_id": "{fresh}", "quality": 1, "cost_usd": 0, "latency_ms": 0, "extra": 1}',
    ),
    ("writer", "null"),
    ("writer", "[]"),
    ("writer", '"text"'),
    ("writer", "{not json"),
    ("reader", GOOD.format("{fresh}")),  # 403
    ("reader", "{}"),  # 403 before the body's 422
    ("reader", "{not json"),  # the JSON decode error comes first, as in FastAPI
    ("none", GOOD.format("{fresh}")),  # 401
]


def _decision(client: TestClient, keys: Keys) -> str:
    made = client.post(DECIDE.format(name="plain"), json={}, headers=keys.header(keys.writer))
    assert made.status_code == 200, made.text
    decision_id: str = made.json()["decision_id"]
    return decision_id


@pytest.fixture
def used(pair: tuple[TestClient, TestClient, Keys]) -> str:
    """A decision that has its feedback already."""
    service, _, keys = pair
    decision_id = _decision(service, keys)
    sent = service.post(
        FEEDBACK, content=GOOD.format(decision_id), headers=_feedback_headers(keys, "writer", "")
    )
    assert sent.json() == {"decision_id": decision_id, "status": "accepted"}
    return decision_id


def _feedback_headers(keys: Keys, key: str, body: str | None) -> dict[str, str]:
    headers = {} if key == "none" else keys.header(getattr(keys, key))
    if body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _feedback_answer(
    client: TestClient, keys: Keys, key: str, body: str | None, used: str
) -> tuple[int, str, str]:
    """Status, content type and the body's bytes, with this request's own decision id as
    ``{fresh}`` (each client gets a decision of its own)."""
    fresh = _decision(client, keys) if body is not None and "{fresh}" in body else "-"
    sent = None
    if body is not None:
        sent = body.replace("{fresh}", fresh).replace("{used}", used)
        sent = sent.replace("{unknown}", "0" * 8 + "-0000-4000-8000-" + "0" * 12)
    response = client.post(FEEDBACK, content=sent, headers=_feedback_headers(keys, key, body))
    return (
        response.status_code,
        response.headers["content-type"],
        response.text.replace(fresh, "{fresh}"),
    )


@pytest.mark.parametrize(("key", "body"), FEEDBACK_CASES)
def test_feedback_answers_as_fastapis_own_handler(
    pair: tuple[TestClient, TestClient, Keys],
    hot: TestClient,
    used: str,
    key: str,
    body: str | None,
) -> None:
    service, reference, keys = pair
    expected = _feedback_answer(reference, keys, key, body, used)
    assert _feedback_answer(service, keys, key, body, used) == expected
    assert _feedback_answer(hot, keys, key, body, used) == expected


def test_every_feedback_case_kind_is_covered(
    pair: tuple[TestClient, TestClient, Keys], used: str
) -> None:
    service, _, keys = pair
    answers = [_feedback_answer(service, keys, *case, used) for case in FEEDBACK_CASES]
    assert {status for status, _, _ in answers} == {202, 401, 403, 404, 422}
    acknowledged = [json.loads(text)["status"] for status, _, text in answers if status == 202]
    assert sorted(set(acknowledged)) == ["accepted", "duplicate"]


def test_feedback_on_the_hot_path_is_counted_and_learned(
    pair: tuple[TestClient, TestClient, Keys], hot: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path serves feedback without the app (here the app refuses every request), and
    its feedback reaches the statistics and the HTTP metrics under the route's template, and
    its answer carries the request id."""
    service, _, keys = pair

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"{scope['path']} reached FastAPI")

    monkeypatch.setattr(hot.app, "app", refuse)
    labels = {"method": "POST", "route": FEEDBACK, "status": "202"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0
    decision_id = _decision(service, keys)
    answer = hot.post(
        FEEDBACK,
        content=GOOD.format(decision_id),
        headers={**_feedback_headers(keys, "writer", ""), "X-Request-ID": "req-43"},
    )
    assert (answer.status_code, answer.json()["status"]) == (202, "accepted"), answer.text
    assert answer.headers["x-request-id"] == "req-43"
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
    report = service.get("/api/v1/workloads/plain/report", headers=keys.header(keys.reader))
    assert report.status_code == 200, report.text
    assert sum(arm["feedback"] for arm in report.json()["arms"]) == 1
