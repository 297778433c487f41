"""schemathesis against the real service's /openapi.json: the stateful machine follows the
document's OpenAPI links (create → decide → feedback → report → promote → rollback → delete;
which of them a derandomized walk takes moves with any answer, so decide's link on to feedback
is also followed by hand), and stateless positive and negative examples reach every operation
and its error paths. Run with the all-scopes key, with a read-only key and without a key: no
answer is a 5xx and every answer conforms to the documented status codes, content types, headers
and schemas.

Bounded and deterministic (derandomized, no example database); each run's requests per operation
are in its assertion message and printed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from tests._support.service import RunningService, launch

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Negative examples must be refused (4xx), and a deleted workload must stay gone.
WITH_KEY = [*CONFORMANCE, negative_data_rejection, use_after_free]
OPERATIONS = 18
POSITIVE, NEGATIVE = 60, 60  # stateless examples per operation and mode (all-scopes key)
UNAUTHORIZED = 15  # per operation, with the read-only key and with no key
SCENARIOS, STEPS = 100, 10  # stateful
ARMS = [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service of its own: the stateful run creates and deletes workloads at will."""
    running = launch(tmp_path_factory.mktemp("fuzz-service"))
    try:
        with running.client() as client:  # a workload that exists, so success paths are reached
            created = client.post("/api/v1/workloads", json={"name": "fuzz", "arms": ARMS})
            assert created.status_code == 201, created.text
        yield running
    finally:
        running.terminate()


@pytest.fixture(scope="module")
def schema(service: RunningService) -> Any:
    loaded = schemathesis.openapi.from_url(f"{service.http_url}/openapi.json")
    return loaded


def summary(requests: Counter[str], failures: list[str]) -> str:
    lines = [f"{count:5d}  {label}" for label, count in sorted(requests.items())]
    text = f"requests per operation ({sum(requests.values())} in all):\n" + "\n".join(lines)
    if failures:
        text += "\n\nfailures:\n" + "\n\n".join(failures)
    print(text)
    return text


def takes_input(operation: Any) -> bool:
    return bool(list(operation.iter_parameters())) or bool(list(operation.body))


def run_stateless(
    schema: Any,
    service: RunningService,
    headers: dict[str, str],
    checks: list[Callable[..., Any]],
    plan: list[tuple[GenerationMode, int]],
    statuses: Counter[tuple[str, int]] | None = None,
) -> tuple[Counter[str], list[str]]:
    """Each operation, in each mode, ``examples`` times; every failure collected."""
    requests: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in plan:
            if mode is GenerationMode.NEGATIVE and not takes_input(operation):
                continue  # nothing to make invalid (the health probes, /version)

            @given(case=operation.as_strategy(generation_mode=mode))
            @_settings(examples)
            def check(case: Any) -> None:
                label = operation.label  # noqa: B023 (called right away, in this iteration)
                requests[label] += 1
                response = case.call(base_url=service.http_url, headers=headers)
                if statuses is not None:
                    statuses[(label, response.status_code)] += 1
                case.validate_response(response, checks=checks, headers=headers)

            try:
                check()
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # every operation's failure, then all reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return requests, failures


def test_stateful_links_with_the_all_scopes_key(schema: Any, service: RunningService) -> None:
    requests: Counter[str] = Counter()
    transitions: Counter[str] = Counter()
    headers = service.headers

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Every scenario starts from the same server state — no workload but "fuzz", as
            # created — so the same draws meet the same answers: hypothesis checks that its
            # generation is consistent, and state left by an earlier scenario breaks that.
            with service.client() as client:
                for item in client.get("/api/v1/workloads").json()["items"]:
                    client.delete(f"/api/v1/workloads/{item['name']}")
                created = client.post("/api/v1/workloads", json={"name": "fuzz", "arms": ARMS})
                assert created.status_code == 201, created.text

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": service.http_url, "headers": headers}

        def step(self, input: Any) -> Any:
            if input.transition is not None:
                transitions[input.transition.id] += 1
            requests[input.case.operation.label] += 1
            return super().step(input)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(
                response, checks=WITH_KEY, headers=headers, transport_kwargs=kwargs
            )

    failures: list[str] = []
    try:
        Machine.run(
            settings=settings(
                _settings(SCENARIOS),
                stateful_step_count=STEPS,
            )
        )
    except (Exception, BaseExceptionGroup) as exc:
        failures.append(str(exc))
    text = (
        summary(requests, failures)
        + "\n\nlinks followed:\n"
        + "\n".join(f"{count:5d}  {name}" for name, count in sorted(transitions.items()))
    )
    print(text)
    assert not failures, text
    # the document's links are followed (which ones, the derandomized walk decides: a change in
    # any answer moves it; decide's link on to feedback is followed by hand below)
    assert sum(transitions.values()) > 0, text
    assert len({name.rsplit(" -> ", 1)[-1] for name in transitions}) >= 5, text


def test_decides_link_on_to_feedback_works_as_documented(service: RunningService) -> None:
    """decide's RecordFeedback link, read from the served document and applied to a real
    decision, makes a feedback the service accepts and counts."""
    with service.client() as client:
        document = client.get("/openapi.json").json()
        decide = document["paths"]["/api/v1/workloads/{name}/decide"]["post"]
        link = decide["responses"]["200"]["links"]["RecordFeedback"]
        assert link["operationId"] == "record_feedback"
        assert link["requestBody"] == {"decision_id": "$response.body#/decision_id"}
        client.post("/api/v1/workloads", json={"name": "linked", "arms": ARMS})
        decision = client.post("/api/v1/workloads/linked/decide").json()
        # the link's runtime expression, applied to the answer (a JSON pointer into its body)
        body = {
            field: decision[expression.removeprefix("$response.body#/")]
            for field, expression in link["requestBody"].items()
        }
        feedback_path = next(
            path
            for path, item in document["paths"].items()
            if item.get("post", {}).get("operationId") == link["operationId"]
        )
        outcome = {"quality": 0.9, "cost_usd": 0.01, "latency_ms": 120.0}
        answer = client.post(feedback_path, json={**body, **outcome})
        assert answer.status_code == 202, answer.text
        report = client.get("/api/v1/workloads/linked/report").json()
        assert sum(arm["feedback"] for arm in report["arms"]) == 1, report


def test_every_operation_and_its_error_paths_with_the_all_scopes_key(
    schema: Any, service: RunningService
) -> None:
    statuses: Counter[tuple[str, int]] = Counter()
    requests, failures = run_stateless(
        schema,
        service,
        service.headers,
        WITH_KEY,
        [(GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE)],
        statuses,
    )
    text = summary(requests, failures)
    assert len(requests) == OPERATIONS, text
    assert not failures, text
    seen = {status for _, status in statuses}
    # success and the client-error paths were all reached
    assert {200, 201, 202, 204, 404, 422} <= seen, sorted(statuses.items())
    assert not [key for key in statuses if key[1] >= 500], sorted(statuses.items())


@pytest.mark.parametrize("who", ["read-only key", "no key"])
def test_every_operation_without_the_needed_scope(
    schema: Any, service: RunningService, who: str
) -> None:
    headers = {"Authorization": f"Bearer {service.read_key}"} if who == "read-only key" else {}
    statuses: Counter[tuple[str, int]] = Counter()
    requests, failures = run_stateless(
        schema,
        service,
        headers,
        CONFORMANCE,
        [(GenerationMode.POSITIVE, UNAUTHORIZED), (GenerationMode.NEGATIVE, UNAUTHORIZED)],
        statuses,
    )
    text = summary(requests, failures)
    assert len(requests) == OPERATIONS, text
    assert not failures, text
    for (label, status), _count in statuses.items():
        method, path = label.split(" ", 1)
        if not path.startswith("/api/v1"):
            continue
        # never served without the scope (schemathesis' negative cases also spoil the header, so
        # a read-only key may meet 401 as well as 403)
        if who == "no key" or method != "GET":
            assert not 200 <= status < 300, (label, status, text)
        assert status != 403 or who == "read-only key", (label, status, text)


@pytest.mark.parametrize("body", [b"not json", b'{"quality": NaN}', b"x" * 2_000_000])
def test_a_request_without_a_key_is_refused_before_its_body_is_read(
    service: RunningService, body: bytes
) -> None:
    answer = httpx.post(
        f"{service.http_url}/api/v1/feedback",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "unauthorized"
