"""The client CLI end to end against a real running service (SQLite, free ports)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

from ops.core import project
from tests._support.service import RunningService

# The client's command, as its package declares it ([project.scripts]).
CLI_COMMAND = next(
    iter(tomllib.loads((project.CLI_DIR / "pyproject.toml").read_text())["project"]["scripts"])
)


def cli(
    svc: RunningService | None, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / CLI_COMMAND
    env = {"PATH": str(Path(sys.executable).parent), "NO_COLOR": "1", "COLUMNS": "200"}
    if svc is not None:
        env["LLM_OPTIMIZER_API_URL"] = svc.http_url
        env["LLM_OPTIMIZER_API_KEY"] = key if key is not None else svc.api_key
    return subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def ok_json(svc: RunningService, *args: str) -> object:
    result = cli(svc, "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def workload(running_service: RunningService) -> str:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = ok_json(
        running_service, "workload", "create", name,
        "--arm", "cheap=openai/gpt-4o-mini", "--arm", "strong=anthropic/claude-sonnet",
        "--min-quality", "0.5",
    )  # fmt: skip
    assert isinstance(created, dict)
    assert created["name"] == name
    return name


def test_round_trip_decide_feedback_report(running_service: RunningService, workload: str) -> None:
    decision = ok_json(running_service, "decide", workload, "--context", '{"tier": "free"}')
    assert isinstance(decision, dict)
    assert decision["arm"] in {"cheap", "strong"}
    assert decision["config"]["provider"] in {"openai", "anthropic"}
    ack = cli(running_service, "feedback", decision["decision_id"], "--quality", "0.9",
              "--cost-usd", "0.002", "--latency-ms", "350")  # fmt: skip
    assert ack.returncode == 0, ack.stderr
    report = ok_json(running_service, "report", workload)
    assert isinstance(report, dict)
    arms = {arm["name"]: arm for arm in report["arms"]}
    assert arms[decision["arm"]]["feedback"] == 1
    table = cli(running_service, "report", workload)
    assert table.returncode == 0, table.stderr
    assert decision["arm"] in table.stdout


def test_budget_and_its_pacing_in_the_report(running_service: RunningService) -> None:
    name = f"cli-budget-{uuid.uuid4().hex[:8]}"
    created = ok_json(running_service, "workload", "create", name, "--arm", "a=m-a",
                      "--arm", "b=m-b", "--daily-budget-usd", "12.5")  # fmt: skip
    assert isinstance(created, dict)
    assert created["budget"] == {"daily_usd": 12.5}
    report = ok_json(running_service, "report", name)
    assert isinstance(report, dict)
    assert report["pacing"]["daily_usd"] == 12.5
    assert report["evaluation"]["latest"] is None
    table = cli(running_service, "report", name)
    assert table.returncode == 0, table.stderr
    assert "budget $12.5/day: spent $0.00 of $" in table.stdout
    assert "no stored evaluation" in table.stdout
    refused = cli(running_service, "workload", "create", f"{name}-x", "--arm", "a=m-a",
                  "--arm", "b=m-b", "--daily-budget-usd", "0")  # fmt: skip
    assert refused.returncode != 0
    assert "budget" in refused.stderr
    assert "greater than 0" in refused.stderr


def test_session_decide_and_session_feedback(
    running_service: RunningService, workload: str
) -> None:
    session = f"cli-{uuid.uuid4()}"
    decisions = [ok_json(running_service, "decide", workload, "--session-id", session)
                 for _ in range(2)]  # fmt: skip
    answer = ok_json(running_service, "session-feedback", session, "--quality", "0.6",
                     "--cost-usd", "0.01", "--workload", workload)  # fmt: skip
    assert isinstance(answer, dict)
    assert answer["accepted"] == 2
    assert {i["decision_id"] for i in answer["items"]} == {d["decision_id"] for d in decisions}


def test_outputs_table_json_yaml(running_service: RunningService, workload: str) -> None:
    as_json = ok_json(running_service, "workload", "show", workload)
    as_yaml = yaml.safe_load(
        cli(running_service, "-o", "yaml", "workload", "show", workload).stdout
    )
    assert as_json == json.loads(json.dumps(as_yaml, default=str))
    listing = cli(running_service, "workload", "list")
    assert listing.returncode == 0
    assert workload in listing.stdout


def test_promote_rollback_and_delete(running_service: RunningService, workload: str) -> None:
    promoted = ok_json(running_service, "promote", workload, "strong", "--canary-percent", "25")
    assert isinstance(promoted, dict)
    shown = ok_json(running_service, "workload", "show", workload)
    assert isinstance(shown, dict)
    assert shown["promoted_arm"] == "strong"
    assert shown["canary_percent"] == 25
    assert cli(running_service, "rollback", workload).returncode == 0
    shown = ok_json(running_service, "workload", "show", workload)
    assert isinstance(shown, dict)
    assert shown["promoted_arm"] is None
    assert cli(running_service, "workload", "delete", workload).returncode == 0
    gone = cli(running_service, "workload", "show", workload)
    assert gone.returncode == 1
    assert "HTTP 404" in gone.stderr


def test_create_from_file(running_service: RunningService, tmp_path: Path) -> None:
    name = f"file-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "workload.yaml"
    spec.write_text(yaml.safe_dump({
        "name": name, "strategy": "ucb",
        "arms": [{"name": "a", "model": "m1"}, {"name": "b", "model": "m2"}],
    }))  # fmt: skip
    created = ok_json(running_service, "workload", "create", "--file", str(spec))
    assert isinstance(created, dict)
    assert created["strategy"] == "ucb"


@pytest.mark.parametrize(
    ("args", "key", "expected"),
    [
        (("workload", "list"), "", "HTTP 401"),
        (("workload", "list"), "not-a-real-key", "HTTP 401"),
        (("workload", "show", "does-not-exist"), None, "HTTP 404"),
        (("decide", "nope", "--context", "{bad json"), None, "--context is not valid JSON"),
        (("workload", "create", "lonely", "--arm", "justone"), None, "NAME=MODEL"),
        (("workload", "create", "Bad Name", "--arm", "a=m", "--arm", "b=m"), None,
         "validation failed"),
        (("feedback", str(uuid.uuid4()), "--quality", "0.5"), None, "HTTP 404"),
    ],
)  # fmt: skip
def test_every_http_error_gets_a_clear_message(
    running_service: RunningService, args: tuple[str, ...], key: str | None, expected: str
) -> None:
    result = cli(running_service, *args, key=key)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_read_only_key_cannot_write(running_service: RunningService) -> None:
    result = cli(running_service, "workload", "create", "ro-test", "--arm", "a=m", "--arm", "b=m",
                 key=running_service.read_key)  # fmt: skip
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr


def test_unreachable_api_is_named(tmp_path: Path) -> None:
    env_cli = cli(None, "--api-url", "http://127.0.0.1:9", "workload", "list")
    assert env_cli.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:9" in env_cli.stderr


def test_health_and_version(running_service: RunningService) -> None:
    health = cli(running_service, "-o", "json", "health")
    assert health.returncode in (0, 2), health.stderr
    assert json.loads(health.stdout)["status"] in ("ok", "degraded")
    version = ok_json(running_service, "version")
    assert isinstance(version, dict)
    assert version["client"] == project.version()
    assert version["server"]["version"] == project.version()


def test_client_has_no_server_dependencies() -> None:
    code = (
        "import sys, llm_optimizer_cli.main\n"
        "heavy = {'llm_optimizer_service', 'fastapi', 'sqlalchemy', 'grpc', 'numpy'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    from importlib.metadata import requires

    declared = {
        r.split(">")[0].split("=")[0].split("[")[0].strip()
        for r in requires("llm-optimizer-cli") or []
    }
    assert declared.isdisjoint(
        {"llm-optimizer-service", "fastapi", "sqlalchemy", "grpcio", "numpy"}
    )


def test_evaluate_a_candidate(
    running_service: RunningService, workload: str, tmp_path: Path
) -> None:
    with running_service.client() as client:  # logged decisions with feedback (over HTTP)
        for _ in range(100):
            decision = client.post(f"/api/v1/workloads/{workload}/decide").json()
            quality = 0.9 if decision["arm"] == "strong" else 0.6
            feedback = {"decision_id": decision["decision_id"], "quality": quality,
                        "cost_usd": 0.0, "latency_ms": 100.0}  # fmt: skip
            assert client.post("/api/v1/feedback", json=feedback).status_code == 202
    logged = ok_json(running_service, "report", workload)
    assert isinstance(logged, dict)
    counts = {arm["name"]: arm["feedback"] for arm in logged["arms"]}
    arm = max(counts, key=lambda name: counts[name])  # the better-supported arm
    estimate = ok_json(running_service, "evaluate", workload, "--arm", arm, "--limit", "100")
    assert isinstance(estimate, dict)
    assert estimate["candidate"] == {arm: 1.0}
    assert estimate["dr"]["value"] == pytest.approx(0.9 if arm == "strong" else 0.6)
    table = cli(running_service, "evaluate", workload, "--arm", arm)
    assert table.returncode == 0, table.stderr
    assert "effective sample size" in table.stdout
    assert "snips" in table.stdout
    assert "against logged" in table.stdout
    # the latest evaluation is stored and shown by the report
    stored = ok_json(running_service, "report", workload)
    assert isinstance(stored, dict)
    latest = stored["evaluation"]["latest"]
    assert latest["candidate"] == {"arm": arm}
    assert latest["source"] == "evaluate"
    assert latest["limit"] == 10_000
    shown = cli(running_service, "report", workload)
    assert shown.returncode == 0, shown.stderr
    assert f"latest evaluation: arm {arm} fixed" in shown.stdout
    assert "dr" in shown.stdout
    assert "no stored evaluation" not in shown.stdout
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("arms: [cheap, strong, brand-new]\n")
    refused = cli(running_service, "evaluate", workload, "--candidate", str(candidate))
    assert refused.returncode == 1
    assert "'brand-new' is not an arm" in refused.stderr
    both = cli(running_service, "evaluate", workload, "--arm", arm, "--candidate", str(candidate))
    assert both.returncode == 2
    assert "exactly one of --arm or --candidate" in both.stderr
