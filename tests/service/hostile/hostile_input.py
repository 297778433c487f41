"""Hostile input for the service's edges (REST, gRPC, Kafka): hypothesis strategies that start
from a valid request and spoil it — non-finite and huge numbers (also as raw JSON literals that
``json`` cannot write: ``NaN``, ``Infinity``, ``1e999``), wrong types, nulls, deep nesting,
control/bidi/NUL characters, unknown fields — plus the snapshot of the workloads that such input
must leave alone.

A body is a tree of Python values in which :class:`Raw` leaves are written verbatim, so the
literals reach the server's parser exactly as a hostile client sends them."""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests._support.api import create_workload, decide
from tests._support.service import RunningService, launch

EXAMPLES = 200  # per property: the floor
ARMS = [
    {"name": "cheap", "model": "small", "params": {"temperature": 0.2}},
    {"name": "smart", "model": "large", "provider": "acme"},
]


def bounded(examples: int = EXAMPLES) -> settings:
    """Deterministic and bounded: the same examples on every run, no example database."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is (``NaN``, ``1e999``, a 400-digit integer...)."""

    text: str


NON_FINITE = ("NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400")
HUGE = ("1e308", "-1e308", "1.7976931348623157e308", "1e155", "9" * 400, "-" + "9" * 400)
ODD_NUMBERS = ("-0.0", "-0", "0e0", "5e-324", "2147483648", "9223372036854775808", "1e-400")
# Cc controls, Cf format (bidi overrides, zero-width), a lone surrogate, unassigned, NUL
ODD_CHARACTERS = (
    "\x00",
    "\x07",
    "\x1b[31m",
    "\x7f",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\ud800",
    "\U000e0001",
    "\U0010ffff",
    "\u0378",
)


def non_finite(value: Any) -> bool:
    """A number literal that parses to NaN or ±infinity (``-NaN`` is no JSON at all)."""
    return isinstance(value, Raw) and value.text in set(NON_FINITE) - {"-NaN"}


def not_json(value: Any) -> bool:
    """A token no JSON parser accepts (Python's included)."""
    return isinstance(value, Raw) and value.text == "-NaN"


def odd_strings() -> st.SearchStrategy[str]:
    plain = st.text(max_size=40)
    spiked = st.builds(
        lambda head, odd, tail: head + odd + tail,
        st.text(alphabet="abc-_", max_size=8),
        st.sampled_from(ODD_CHARACTERS),
        st.text(alphabet="xyz", max_size=8),
    )
    return st.one_of(spiked, plain, st.just(""), st.just("x" * 5000))


def keys() -> st.SearchStrategy[str]:
    """Odd object keys, a lone surrogate among them (once echoed in a 422 that answered 500)."""
    return odd_strings()


def hostile_leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([Raw(text) for text in NON_FINITE]),
        st.sampled_from([Raw(text) for text in HUGE + ODD_NUMBERS]),
        st.sampled_from([None, True, False, "0.5", "1", "", "NaN", [], {}]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(2**70), max_value=2**70),
        odd_strings(),
    )


def nested(depth: int) -> Any:
    """``depth`` lists inside each other around a NaN."""
    value: Any = Raw("NaN")
    for _ in range(depth):
        value = [value]
    return value


def hostile_values() -> st.SearchStrategy[Any]:
    leaves = hostile_leaves()
    return st.one_of(
        leaves,
        st.lists(leaves, max_size=3),
        st.dictionaries(keys(), leaves, max_size=3),
        st.sampled_from([nested(30), nested(400), {"a": {"b": {"c": Raw("Infinity")}}}]),
    )


def spoil(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """One valid body spoiled in one to three places (a path into it, or the whole of it)."""
    paths = list(_paths(valid))

    @st.composite
    def spoiled(draw: st.DrawFn) -> Any:
        body = json.loads(json.dumps(valid))
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["replace", "replace", "drop", "unknown", "whole"]))
            path = draw(st.sampled_from(paths))
            if action == "whole":
                return draw(hostile_values())
            parent = _at(body, path[:-1])
            if not isinstance(parent, dict | list):
                continue
            key = path[-1]
            if action == "replace" and _has(parent, key):
                parent[key] = draw(hostile_values())
            elif action == "drop" and isinstance(parent, dict):
                parent.pop(key, None)
            elif action == "unknown" and isinstance(parent, dict):
                parent[draw(keys())] = draw(hostile_leaves())
        return body

    return spoiled()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        found.append((*prefix, key))
        if isinstance(child, dict | list) and child:
            found.extend(_paths(child, (*prefix, key)))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if not _has(value, key):
            return None
        value = value[key]
    return value


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def contains(value: Any, test: Any) -> bool:
    """Whether any leaf of ``value`` (keys included) passes ``test``."""
    if test(value):
        return True
    if isinstance(value, dict):
        return any(contains(k, test) or contains(v, test) for k, v in value.items())
    if isinstance(value, list):
        return any(contains(item, test) for item in value)
    return False


def encode(value: Any) -> bytes:
    """The JSON text of ``value`` with :class:`Raw` leaves verbatim; lone surrogates kept as
    ``\\ud800`` escapes (valid JSON text a Python client could send)."""
    return _text(value).encode("utf-8")


def _text(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_text(str(k))}:{_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(item) for item in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    return json.dumps(value, ensure_ascii=True)


# -- what must survive ----------------------------------------------------------------------------


def give_feedback(client: httpx.Client, workload: str, count: int) -> None:
    """``count`` decisions on ``workload``, each with accepted feedback (one batch)."""
    items = []
    for index in range(count):
        items.append(
            {
                "decision_id": decide(client, workload)["decision_id"],
                "quality": 0.5 + 0.05 * (index % 10),
                "cost_usd": 0.001 * (index % 3),
                "latency_ms": 100 + index,
            }
        )
    ack = client.post("/api/v1/feedback/batch", json={"items": items})
    assert ack.status_code == 202, ack.text
    assert ack.json()["accepted"] == count, ack.text


@contextlib.contextmanager
def seeded_service(
    directory: Path, bystanders: list[str], others: list[str]
) -> Iterator[RunningService]:
    """A service with ``bystanders`` (each with feedback) and empty ``others`` workloads."""
    running = launch(directory)
    try:
        with running.client() as client:
            for name in [*bystanders, *others]:
                create_workload(client, name, ARMS)
            for name in bystanders:
                give_feedback(client, name, 12)
        yield running
    finally:
        running.terminate()


def reports(client: httpx.Client, workloads: list[str]) -> dict[str, Any]:
    """Each workload's report (the contract's JSON), for a before/after comparison."""
    found: dict[str, Any] = {}
    for name in workloads:
        answer = client.get(f"/api/v1/workloads/{name}/report")
        assert answer.status_code == 200, f"{name}: {answer.status_code} {answer.text}"
        found[name] = answer.json()
    return found


def error_message(answer: httpx.Response) -> str:
    """The message of a 4xx answer: the contract's error body or FastAPI's 422 body."""
    assert answer.headers.get("content-type", "").startswith("application/json"), (
        answer.status_code,
        answer.headers.get("content-type"),
        answer.text[:300],
    )
    body = answer.json()
    if "error" in body:
        assert body["error"]["code"], body
        message = body["error"]["message"]
    else:
        assert body["detail"], body
        message = "; ".join(str(item["msg"]) for item in body["detail"])
    assert isinstance(message, str), body
    assert message, body
    return message


# -- the known-bad inputs of each class (the restart test sends them; the suites start from them) --


def bad_feedback_messages(decision_id: str) -> list[bytes | None]:
    """Kafka feedback values that must be dead-lettered although ``decision_id`` is real."""

    def with_field(field: str, literal: str) -> bytes:
        body = {"decision_id": decision_id, "quality": 0.5, "cost_usd": 0.01, "latency_ms": 20}
        text = json.dumps(body)[:-1] + f', "{field}": {literal}}}'
        return text.replace(f'"{field}": {json.dumps(body.get(field))}, ', "").encode()

    return [
        None,  # a tombstone
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        with_field("quality", "NaN"),
        with_field("quality", "-Infinity"),
        with_field("cost_usd", "Infinity"),
        with_field("cost_usd", "1e999"),
        with_field("cost_usd", "1e155"),
        with_field("latency_ms", "1e308"),
        with_field("latency_ms", "9" * 400),
        with_field("quality", '"0.5"'),
        with_field("quality", "true"),
        with_field("quality", "null"),
        with_field("input_tokens", "2147483648"),
        with_field("input_tokens", "-1"),
        with_field("error", '"yes"'),
        with_field("\\ud800", "1"),  # an unknown field named by a lone surrogate
        with_field("unknown\\u202e", "1"),
        json.dumps({"decision_id": decision_id}).encode(),
        json.dumps({"decision_id": decision_id + "\u0000", "quality": 0.5}).encode(),
    ]


def unknown_decision_message() -> bytes:
    body = {"decision_id": str(uuid.uuid4()), "quality": 0.5, "cost_usd": 0.0, "latency_ms": 1.0}
    return json.dumps(body).encode()
