"""schemathesis against the real service's /openapi.json, with a valid key: no 5xx and every
response conforms to the documented status codes and schemas. Bounded: a few examples per
operation, deterministic."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests._support.service import RunningService

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 12


def test_openapi_conformance(running_service: RunningService) -> None:
    base = running_service.http_url
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    # A workload that exists, so decide/report/promote also reach their success paths.
    with running_service.client() as client:
        client.post(
            "/api/v1/workloads",
            json={
                "name": "fuzz",
                "arms": [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}],
            },
        )
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base, headers=running_service.headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 14
    assert not failures, "\n\n".join(failures)
