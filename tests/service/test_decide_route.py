"""decide's own route handler (``routes._DecideRoute``) answers exactly what FastAPI's generic
handler answers for decide's signature: the same request, sent to the service's app and to an
app that serves the same endpoint function through a plain ``APIRoute``, gets the same status,
the same error body (422 items, 401/403/404/409 errors) and, for a decision, the same shape."""

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
from llm_optimizer_service.api import create_app, errors, routes
from llm_optimizer_service.api.middleware import RequestContextMiddleware

from tests.service.conftest import Keys, make_settings

DECIDE = "/api/v1/workloads/{name}/decide"
ARMS = [
    {"name": f"arm-{i}", "model": f"model-{i}", "params": {"temperature": i / 10}} for i in range(3)
]


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
        admin = keys.header(keys.admin)
        for name, extra in (("plain", {}), ("tiered", {"context_features": {"tier": ["a", "b"]}})):
            created = client.post(
                "/api/v1/workloads", json={"name": name, "arms": ARMS, **extra}, headers=admin
            )
            assert created.status_code == 201, created.text
        yield client, TestClient(reference), keys


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


@pytest.mark.parametrize(("key", "workload", "body"), CASES)
def test_decide_answers_as_fastapis_own_handler(
    pair: tuple[TestClient, TestClient, Keys], key: str, workload: str, body: bytes | None
) -> None:
    service, reference, keys = pair
    assert _answer(service, keys, key, workload, body) == _answer(
        reference, keys, key, workload, body
    )


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
