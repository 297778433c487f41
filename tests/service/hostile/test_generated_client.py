"""A client generated from the real service's /openapi.json by openapi-python-client, as a new
user would make one, drives create → decide (without and with a body) → feedback → report.

The generator is a catalogued tool in its own venv (``invoke setup``,
``ops/core/tools.py``): it pins
typer below the version the service's CLI uses, so it cannot share the test environment's lock."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests._support.service import RunningService
from tests._support.tools import require_tool

PACKAGE = "llm_auto_optimizer_client"  # the generator's name for the document's title
# operationId (the handler's name) -> the generated module, api/<tag>/<operationId>.py
OPERATIONS = {
    "list_workloads": "workloads",
    "create_workload": "workloads",
    "get_workload": "workloads",
    "patch_workload": "workloads",
    "delete_workload": "workloads",
    "decide": "decisions",
    "record_feedback": "feedback",
    "record_feedback_batch": "feedback",
    "record_session_feedback": "feedback",
    "get_report": "report",
    "promote_arm": "policy",
    "evaluate_candidate": "policy",
    "rollback_policy": "policy",
    "get_admin_stats": "admin",
    "health_live": "health",
    "health_ready": "health",
    "health": "health",
    "get_version": "health",
}


@pytest.fixture(scope="module")
def generated(
    running_service: RunningService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The generated project's directory, importable while the module's tests run."""
    generator = require_tool("openapi-python-client")
    workdir = tmp_path_factory.mktemp("generated-client")
    document = workdir / "openapi.json"
    document.write_bytes(httpx.get(f"{running_service.http_url}/openapi.json").content)
    output = workdir / "client"
    command = [
        str(generator),
        "generate",
        "--path",
        str(document),
        "--output-path",
        str(output),
        "--fail-on-warning",
    ]
    # its post-generation hook runs the ruff of its own venv
    path = os.pathsep.join([str(generator.resolve().parent), os.environ.get("PATH", "")])
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        env={**os.environ, "PATH": path},
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    # a warning is a failure with --fail-on-warning; the output says so if one slipped through
    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    sys.path.insert(0, str(output))
    try:
        yield output
    finally:
        sys.path.remove(str(output))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_every_operation_has_a_readable_function(generated: Path) -> None:
    api = generated / PACKAGE / "api"
    found = {path.stem: path.parent.name for path in api.glob("*/*.py") if path.stem != "__init__"}
    assert found == OPERATIONS
    for operation, tag in OPERATIONS.items():
        functions = module(f"api.{tag}.{operation}")
        for name in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
            assert callable(getattr(functions, name)), (operation, name)


def test_create_decide_feedback_report_through_the_generated_client(
    generated: Path, running_service: RunningService
) -> None:
    client_module = module("client")
    models = module("models")
    create_workload = module("api.workloads.create_workload")
    decide = module("api.decisions.decide")
    record_feedback = module("api.feedback.record_feedback")
    get_report = module("api.report.get_report")

    client = client_module.AuthenticatedClient(
        base_url=running_service.http_url, token=running_service.api_key, timeout=30
    )
    name = f"generated-{uuid.uuid4().hex[:8]}"
    with client as session:
        created = create_workload.sync_detailed(
            client=session,
            body=models.WorkloadCreate.from_dict(
                {
                    "name": name,
                    "arms": [
                        {"name": "cheap", "model": "small", "params": {"temperature": 0.2}},
                        {"name": "smart", "model": "large", "provider": "acme"},
                    ],
                    "objective": {"quality_weight": 1, "cost_weight": 10},
                }
            ),
        )
        assert created.status_code == 201, created.content
        assert isinstance(created.parsed, models.WorkloadOut)
        assert created.parsed.name == name

        # decide without a body: the optional body is left out, not sent as null
        bare = decide.sync_detailed(name, client=session)
        assert bare.status_code == 200, bare.content
        assert isinstance(bare.parsed, models.DecisionOut)
        assert bare.parsed.arm in {"cheap", "smart"}

        context = models.DecideBodyContextType0.from_dict({"user_tier": "free", "length": 120})
        with_context = decide.sync(name, client=session, body=models.DecideBody(context=context))
        assert isinstance(with_context, models.DecisionOut), with_context
        assert 0 < with_context.propensity <= 1

        for decision, quality in ((bare.parsed, 0.9), (with_context, 0.4)):
            ack = record_feedback.sync(
                client=session,
                body=models.FeedbackBody(
                    decision_id=decision.decision_id,
                    quality=quality,
                    cost_usd=0.002,
                    latency_ms=350,
                    input_tokens=120,
                    output_tokens=40,
                ),
            )
            assert isinstance(ack, models.FeedbackAck), ack
            assert (ack.decision_id, ack.status.value) == (decision.decision_id, "accepted")

        report = get_report.sync(name, client=session)
        assert isinstance(report, models.ReportOut), report
        assert report.workload == name
        assert sum(arm.feedback for arm in report.arms) == 2
        assert sum(arm.decisions for arm in report.arms) == 2


def test_the_generated_client_reports_errors_as_documented(
    generated: Path, running_service: RunningService
) -> None:
    client_module = module("client")
    models = module("models")
    decide = module("api.decisions.decide")
    record_feedback = module("api.feedback.record_feedback")
    with client_module.AuthenticatedClient(
        base_url=running_service.http_url, token=running_service.api_key, timeout=30
    ) as session:
        missing = decide.sync_detailed("no-such-workload", client=session)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.ErrorBody)
        assert missing.parsed.error.code == "workload_not_found"

        out_of_range = record_feedback.sync_detailed(
            client=session,
            body=models.FeedbackBody(
                decision_id=str(uuid.uuid4()), quality=1.5, cost_usd=0, latency_ms=0
            ),
        )
        assert out_of_range.status_code == 422
        assert out_of_range.parsed is not None
    with client_module.AuthenticatedClient(
        base_url=running_service.http_url, token="not-a-key", timeout=30
    ) as stranger:
        refused = decide.sync_detailed("no-such-workload", client=stranger)
        assert refused.status_code == 401
        assert isinstance(refused.parsed, models.ErrorBody)
