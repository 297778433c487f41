"""The REST edge against the real server (uvicorn, real sockets): each defect a hostile client
found once is a regression test here — non-finite and huge numbers, lax coercion, nulls, odd
characters, content types, oversized and chunked bodies, invented methods, unknown decisions —
and the pure pieces behind them (``body_checks``, ``decision_ids``, the engine's bounds)."""

from __future__ import annotations

import json
import math
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from llm_optimizer_service.api.body_checks import body_problems, is_json_content_type
from llm_optimizer_service.api.middleware import METHODS
from llm_optimizer_service.decision_ids import minted_at, new_decision_id
from llm_optimizer_service.engine import MAX_COST_USD, ArmStats, EngineError, Observation

from tests._support.service import RunningService

ARMS = [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]
WORKLOAD = "edges"


@pytest.fixture(scope="module")
def client(running_service: RunningService) -> Iterator[httpx.Client]:
    with running_service.client() as opened:
        created = opened.post("/api/v1/workloads", json={"name": WORKLOAD, "arms": ARMS})
        assert created.status_code in (201, 409), created.text
        yield opened


def _decision(client: httpx.Client) -> str:
    decided = client.post(f"/api/v1/workloads/{WORKLOAD}/decide")
    assert decided.status_code == 200, decided.text
    decision_id: str = decided.json()["decision_id"]
    return decision_id


def _raw(client: httpx.Client, method: str, path: str, body: str) -> httpx.Response:
    return client.request(
        method, path, content=body.encode(), headers={"content-type": "application/json"}
    )


def _locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [item["loc"] for item in response.json()["detail"]]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_literals_are_422_naming_the_field(client: httpx.Client, literal: str) -> None:
    decision = _decision(client)
    feedback = f'{{"decision_id":"{decision}","quality":0.5,"cost_usd":{literal},"latency_ms":1}}'
    assert _locs(_raw(client, "POST", "/api/v1/feedback", feedback)) == [["body", "cost_usd"]]
    workload = (
        f'{{"name":"nan-params","arms":[{{"name":"a","model":"m","params":{{"t":{literal}}}}},'
        '{"name":"b","model":"m"}]}'
    )
    assert _locs(_raw(client, "POST", "/api/v1/workloads", workload)) == [
        ["body", "arms", 0, "params", "t"]
    ]
    context = f'{{"context":{{"score":[1,{literal}]}}}}'
    assert _locs(_raw(client, "POST", f"/api/v1/workloads/{WORKLOAD}/decide", context)) == [
        ["body", "context", "score", 1]
    ]
    patch = f'{{"objective":{{"cost_weight":{literal}}}}}'
    assert _locs(_raw(client, "PATCH", f"/api/v1/workloads/{WORKLOAD}", patch)) == [
        ["body", "objective", "cost_weight"]
    ]


def test_huge_finite_feedback_is_refused_and_the_workload_stays_readable(
    client: httpx.Client,
) -> None:
    """1e155 once passed, squared to infinity in the statistics and broke the workload."""
    for field in ("cost_usd", "latency_ms"):
        values = {"decision_id": _decision(client), "quality": 0.5, "cost_usd": 0.0}
        values |= {"latency_ms": 1.0, field: 1e155}
        refused = client.post("/api/v1/feedback", json=values)
        assert _locs(refused) == [["body", field]]
        assert "less than or equal" in refused.json()["detail"][0]["msg"]
    bounded = {"decision_id": _decision(client), "quality": 0.5, "latency_ms": 1.0}
    assert client.post("/api/v1/feedback", json=bounded | {"cost_usd": MAX_COST_USD}).is_success
    assert client.get(f"/api/v1/workloads/{WORKLOAD}/report").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/v1/feedback", {"quality": "0.5"}, ["body", "quality"]),
        ("/api/v1/feedback", {"error": 1}, ["body", "error"]),
        ("/api/v1/feedback", {"input_tokens": 1.5}, ["body", "input_tokens"]),
    ],
)
def test_no_lax_coercion(
    client: httpx.Client, path: str, body: dict[str, Any], loc: list[Any]
) -> None:
    values = {"decision_id": _decision(client), "quality": 0.5, "cost_usd": 0, "latency_ms": 1}
    assert loc in _locs(client.post(path, json=values | body))


def test_patch_refuses_null_and_coercion(client: httpx.Client) -> None:
    path = f"/api/v1/workloads/{WORKLOAD}"
    for field in ("arms", "objective", "constraints", "strategy", "strategy_params"):
        assert _locs(client.patch(path, json={field: None})) == [["body", field]]
    assert _locs(client.patch(path, json={"constraints": {"max_latency_ms": True}})) == [
        ["body", "constraints", "max_latency_ms"]
    ]
    assert client.patch(path, json={}).status_code == 200  # omitting keeps


@pytest.mark.parametrize(
    "text", ["a\x00b", "a\tb", "a\x7fb", "a\u202eb", "a\u200bb", "\ud800", " padded"]
)
def test_arm_names_must_be_printable(client: httpx.Client, text: str) -> None:
    arms = [{"name": text, "model": "m"}, {"name": "b", "model": "m"}]
    body = json.dumps({"name": "odd-names", "arms": arms})  # escaped: a lone surrogate too
    assert ["body", "arms", 0, "name"] in _locs(_raw(client, "POST", "/api/v1/workloads", body))


def test_content_types(client: httpx.Client) -> None:
    values = {"decision_id": _decision(client), "quality": 0.5, "cost_usd": 0, "latency_ms": 1}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        response = client.post(
            "/api/v1/feedback",
            content=httpx.Request("POST", "/", json=values).content,
            headers=headers,
        )
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_media_type"
        assert "application/json" in response.json()["error"]["message"]
    charset = {"content-type": "application/json; charset=utf-8"}
    accepted = client.post(
        "/api/v1/feedback",
        content=httpx.Request("POST", "/", json=values).content,
        headers=charset,
    )
    assert accepted.status_code == 202, accepted.text
    # decide takes no body at all: no Content-Type needed
    assert client.post(f"/api/v1/workloads/{WORKLOAD}/decide").status_code == 200


def _http(port: int, request: bytes, reads: int) -> list[bytes]:
    """Send raw bytes on one keep-alive connection; read ``reads`` whole answers."""
    answers: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        buffer = b""
        while len(answers) < reads:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(rest) >= length:
                answers.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                continue
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    return answers


def test_oversized_bodies_are_413_whole_even_chunked(running_service: RunningService) -> None:
    limit = 1_048_576  # the default server.max_request_bytes
    body = b'{"decision_id": "' + b"x" * (limit + 10) + b'"}'
    auth = f"Authorization: Bearer {running_service.api_key}\r\n".encode()
    declared = (
        b"POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    chunked = (
        b"POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in (body[i : i + 65536] for i in range(0, len(body), 65536))
        )
        + b"0\r\n\r\n"
    )
    for request in (declared, chunked):
        for _ in range(5):  # the whole answer every time: nothing cut by a reset
            (answer,) = _http(running_service.http_port, request, 1)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert answer.endswith(b'send less (server.max_request_bytes)"}}'), answer[-200:]


def test_invented_methods_add_no_series(running_service: RunningService) -> None:
    """Whether the HTTP parser refuses them (httptools: 400 before the app) or the app sees them
    (counted as ``other``), invented methods never become label values."""
    with httpx.Client(base_url=running_service.http_url) as plain:
        for index in range(40):
            assert plain.request(f"INVENTED{index}", "/api/v1/workloads").status_code >= 400
    scrape = httpx.get(running_service.metrics_url).text
    assert "INVENTED" not in scrape
    methods = set(re.findall(r'^http_requests_total\{method="([^"]*)"', scrape, re.MULTILINE))
    assert methods <= METHODS | {"other"}, methods


def test_unknown_decisions_are_answered_fast(client: httpx.Client) -> None:
    old_v7 = str(uuid.UUID(int=(int(time.time() * 1000) - 60_000) << 80 | 0x7 << 76 | 1 << 63))
    for unknown in (str(uuid.uuid4()), old_v7, "not-a-uuid"):
        values = {"decision_id": unknown, "quality": 0.5, "cost_usd": 0, "latency_ms": 1}
        started = time.monotonic()
        answer = client.post("/api/v1/feedback", json=values)
        assert answer.status_code == 404, answer.text
        assert time.monotonic() - started < 0.5, unknown
    # one minted just now may still be written by another replica: it waits, but boundedly
    fresh = {"decision_id": new_decision_id(), "quality": 0.5, "cost_usd": 0, "latency_ms": 1}
    started = time.monotonic()
    assert client.post("/api/v1/feedback", json=fresh).status_code == 404
    assert time.monotonic() - started < 2 * 0.05 + 1.0 + 0.5  # 2 flush intervals + margin


def test_every_error_answer_is_documented(running_service: RunningService) -> None:
    document = httpx.get(f"{running_service.http_url}/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"400", "413", "415", "422"} <= documented, (method, path)
            if path.startswith("/api/v1"):
                assert {"401", "403", "429", "503"} <= documented, (method, path)
            assert operation["operationId"].isidentifier(), operation["operationId"]


# -- the pure pieces ------------------------------------------------------------------------------


def test_body_problems() -> None:
    assert body_problems(b'{"a": 1.5, "b": [1e300, -2]}') == []
    assert body_problems(b'{"a": NaN') == []  # malformed: FastAPI's own json_invalid
    [deep] = body_problems(b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in deep["msg"]
    [long] = body_problems(b'{"n": ' + b"9" * 5000 + b"}")
    assert long["type"] == "json_invalid"
    [binary] = body_problems(b'{"a": "\xff\xfe"}')
    assert "not UTF-8" in binary["msg"]
    assert [p["loc"] for p in body_problems(b'{"x": {"y": [0, -Infinity]}}')] == [
        ["body", "x", "y", 1]
    ]
    assert is_json_content_type("application/merge-patch+json")
    assert not is_json_content_type("text/json")


def test_decision_ids_are_uuid7_with_their_mint_time() -> None:
    made = new_decision_id()
    assert uuid.UUID(made).version == 7
    minted = minted_at(made)
    assert minted is not None
    assert abs(minted - time.time()) < 5
    assert minted_at(str(uuid.uuid4())) is None
    assert minted_at("nope") is None
    assert len({new_decision_id() for _ in range(1000)}) == 1000


def test_the_engine_refuses_what_the_edge_refuses() -> None:
    with pytest.raises(EngineError, match="cost_usd must be <="):
        Observation(quality=0.5, cost_usd=1e155, latency_ms=1.0)
    with pytest.raises(EngineError, match="finite"):
        Observation(quality=math.nan, cost_usd=0.0, latency_ms=1.0)
    # statistics built in memory around the checks (from_dict refuses them): never stored on
    already_infinite = ArmStats(n=1.0, sum_cost=1.0, sumsq_cost=math.inf)
    with pytest.raises(EngineError, match="sumsq_cost non-finite"):
        already_infinite.observe(Observation(quality=0.5, cost_usd=1.0, latency_ms=1.0))
