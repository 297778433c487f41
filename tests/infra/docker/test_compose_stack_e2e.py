"""The whole development stack end to end: `invoke deploy --target compose` with the CI stand-ins
(compose.ci.yml: every service of compose.yml but Grafana, which cannot be built here) runs the
real compose.yml, Prometheus config, rules and Alertmanager config, and each wiring works:

- every Prometheus target of monitoring/prometheus/prometheus.yml is up and every rule is loaded;
- the exporters' metrics (monitoring/exporter-metrics.txt) are in Prometheus;
- a feedback produced to Kafka's feedback topic is consumed and counted;
- the trace of a decide request is found in Jaeger by its request id;
- Alertmanager receives ServiceDown once the optimizer is stopped (the rule's real `for: 1m`);
- `compose.down --volumes` leaves no container, network or volume of the project behind.

Host ports are picked at run time and reach `docker compose` through the environment.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import docker.errors
import httpx
import pytest
import yaml
from invoke.config import Config
from invoke.context import Context

from ops import monitoring
from ops.core import project, tools
from ops.core.ports import free_port
from ops.core.runner import Runner
from ops.docker import compose as compose_stack
from ops.docker import engine, standins
from ops.docker.images import BuildResult
from ops.tasks import compose as compose_tasks
from ops.tasks import deploy as deploy_tasks
from tests._support.docker import TEST_TAG, project_resources
from tests._support.tools import require_tool

# Cold, this builds the stand-in images (Debian packages) on 2 busy cores: minutes.
# go_tools: the jaeger, prometheus and alertmanager stand-ins run Go-built tools (after the
# background build).
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.go_tools(*standins.HOST_BUILT.values()),
    pytest.mark.timeout(1800),
]

STACK_TAG = f"{TEST_TAG}-stack"
# Not started with the stand-ins (compose.ci.yml puts them in profiles of their own).
LEFT_OUT = {"grafana"}
SERVICE_NAME = "llm-optimizer-service"  # settings.otel.service_name's default
T = TypeVar("T")


@dataclass(frozen=True)
class Stack:
    project: str
    api_key: str
    ports: dict[str, int]
    up_seconds: float

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}"


def _context(project_name: str) -> Context:
    return Context(
        Config(
            overrides={
                "llm_optimizer": {
                    "registry": "",
                    "image_tag": STACK_TAG,
                    "compose": {"project": project_name, "standins": True},
                    "deploy": {"target": "compose", "env": "dev"},
                }
            }
        )
    )


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture, to stderr: the figures show in a plain `pytest -q` run and in
    CI's (a pytest-xdist worker's stdout is not relayed; its stderr is the run's)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(line, file=sys.stderr, flush=True)


def _wait(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """``probe()`` until it returns something other than None (or raise naming ``what``)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            found = probe()
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            found, last = None, exc
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")
        time.sleep(every)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def stack(
    service_image: BuildResult,
    monkeypatch_module: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    require_tool("docker-compose")
    require_tool("tansu")
    for tool in standins.HOST_BUILT.values():
        require_tool(tool)
    name = f"llmo-stack-{uuid.uuid4().hex[:8]}"
    ports = {
        variable: free_port()
        for variable in (
            "OPTIMIZER_HTTP_PORT", "OPTIMIZER_GRPC_PORT", "OPTIMIZER_METRICS_PORT",
            "POSTGRES_PORT", "REDIS_PORT", "KAFKA_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT",
            "GRAFANA_PORT", "JAEGER_UI_PORT", "JAEGER_OTLP_HTTP_PORT",
        )
    }  # fmt: skip
    api_key = secrets.token_urlsafe(24)
    for key, value in {**ports, "OPTIMIZER_DEV_API_KEY": api_key}.items():
        monkeypatch_module.setenv(key, str(value))
    ctx = _context(name)
    started = time.monotonic()
    try:
        deploy_tasks.up(ctx, target="compose", env="dev")
        seconds = time.monotonic() - started
        _say(request, f"\n[stack e2e] invoke deploy --target compose: {seconds:.0f}s")
        yield Stack(name, api_key, ports, seconds)
    finally:
        compose_tasks.down(ctx, volumes=True)
        _say(request, f"[stack e2e] wall time up to down: {time.monotonic() - started:.0f}s")
        with contextlib.suppress(docker.errors.ImageNotFound):  # the tag only; layers are shared
            engine.client().images.remove(f"{project.SERVICE_IMAGE}:{STACK_TAG}")


def _compose(stack: Stack, *args: str) -> str:
    return Runner(echo=False).output(
        compose_stack.argv("dev", stack.project, *args, standins=True),
        env={"OPTIMIZER_IMAGE": f"{project.SERVICE_IMAGE}:{STACK_TAG}"},
    )


def _prometheus(stack: Stack, path: str, **params: str) -> Any:
    response = httpx.get(f"{stack.url('PROMETHEUS_PORT')}{path}", params=params, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def test_every_service_but_grafana_and_jaeger_runs(stack: Stack) -> None:
    declared = yaml.safe_load(compose_stack.BASE_FILE.read_text())["services"]
    expected = {name for name, spec in declared.items() if not spec.get("profiles")} - LEFT_OUT
    rows = {
        row["Service"]: row
        for row in compose_stack.ps(Runner(echo=False), project=stack.project, standins=True)
    }
    assert set(rows) == expected, rows
    for service, row in rows.items():
        if service == "migrate":
            assert (row["State"], row["ExitCode"]) == ("exited", 0), row
        else:
            assert row["State"] == "running", row
            assert row["Health"] in ("", "healthy"), row
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    health = httpx.get(f"{stack.url('OPTIMIZER_HTTP_PORT')}/health", headers=headers).json()
    assert health["components"]["kafka"] == "ok", health


def test_every_prometheus_target_is_up_and_every_rule_is_loaded(stack: Stack) -> None:
    config = yaml.safe_load(monitoring.PROMETHEUS_CONFIGS["compose"].read_text())
    expected = {
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }

    def all_up() -> dict[tuple[str, str], str] | None:
        active = _prometheus(stack, "/api/v1/targets", state="active")["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        assert set(health) == expected, health
        return health if set(health.values()) == {"up"} else None

    # The first scrape of each target comes within one scrape_interval (15 s).
    _wait("every Prometheus target up", all_up, timeout=90)
    groups = _prometheus(stack, "/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule.name for rule in monitoring.load_rules()}, loaded
    assert set(loaded.values()) <= {"ok", "unknown"}, loaded  # unknown: not evaluated yet


def test_the_exporters_metrics_are_in_prometheus(stack: Stack) -> None:
    wanted = set().union(*monitoring.exporter_metrics_by_exporter().values())

    def missing() -> set[str] | None:
        names = set(_prometheus(stack, "/api/v1/label/__name__/values"))
        return None if wanted - names else set()

    _wait("every exporter metric in Prometheus", missing, timeout=90, every=3)
    for query in ("pg_up", "redis_up"):
        result = _prometheus(stack, "/api/v1/query", query=query)["result"]
        assert [sample["value"][1] for sample in result] == ["1"], (query, result)
    load = _prometheus(stack, "/api/v1/query", query='node_load1{job="node"}')["result"]
    assert len(load) == 1, load


PRODUCE = """
import asyncio, json, sys
from aiokafka import AIOKafkaProducer

async def main() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="kafka:9092", acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("llm-optimizer.feedback", sys.argv[1].encode())
    finally:
        await producer.stop()

asyncio.run(main())
"""


# What the stand-ins really are (docs/containers.md): the version each reports, by scrape job.
# Prometheus and Alertmanager are the catalogue's Go-built releases, those compose.yml names.
REAL_VERSIONS = {
    "prometheus": tools.CATALOGUE["prometheus-go"].version + ".",
    "alertmanager": tools.CATALOGUE["alertmanager-go"].version + ".",
    "postgres": "0.11.",
    "redis": "1.45.",
    "node": "1.5.",
}


def test_the_stand_ins_are_the_versions_the_docs_name(stack: Stack) -> None:
    series = _prometheus(stack, "/api/v1/query", query='{__name__=~".+_build_info"}')["result"]
    versions = {
        sample["metric"]["job"]: sample["metric"].get("version", "")
        for sample in series
        if sample["metric"].get("job") in REAL_VERSIONS
    }
    assert set(versions) == set(REAL_VERSIONS), series
    for job, prefix in REAL_VERSIONS.items():
        assert (versions[job].removeprefix("v") + ".").startswith(prefix), (job, versions[job])
    assert "tansu broker 0.6.0" in _compose(stack, "logs", "--no-color", "kafka")


def test_feedback_sent_through_kafka_is_consumed_and_counted(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    workload = "stack-kafka"
    with httpx.Client(base_url=stack.url("OPTIMIZER_HTTP_PORT"), headers=headers) as http:
        arms = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]
        created = http.post("/api/v1/workloads", json={"name": workload, "arms": arms})
        assert created.status_code == 201, created.text
        decision = http.post(f"/api/v1/workloads/{workload}/decide").json()
        feedback = {
            "decision_id": decision["decision_id"],
            "quality": 0.9,
            "cost_usd": 0.001,
            "latency_ms": 80,
        }
        # Produced from inside the Compose network, by the service image's aiokafka: the broker
        # is served at kafka:9092 only (the stand-in has no host listener).
        _compose(stack, "exec", "-T", "optimizer", "python3", "-c", PRODUCE, json.dumps(feedback))

        def counted() -> int | None:
            report = http.get(f"/api/v1/workloads/{workload}/report").json()
            total = sum(arm["feedback"] for arm in report["arms"])
            return total or None

        try:
            assert _wait("the Kafka feedback in the report", counted, timeout=60) == 1
        except AssertionError as failure:  # e.g. dead-lettered: the log says why
            log = _compose(stack, "logs", "--no-color", "optimizer").splitlines()
            raise AssertionError(
                [line for line in log if "kafka" in line.lower()][-5:]
            ) from failure
    metrics = httpx.get(f"{stack.url('OPTIMIZER_METRICS_PORT')}/metrics").text
    line = f'optimization_feedback_total{{arm="{decision["arm"]}",workload="{workload}"}} 1.0'
    assert line in metrics, [m for m in metrics.splitlines() if "feedback_total" in m]


def test_the_trace_of_a_decide_request_is_found_in_jaeger_by_its_request_id(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    request_id = f"stack-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=stack.url("OPTIMIZER_HTTP_PORT"), headers=headers) as http:
        arms = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]
        assert http.post(
            "/api/v1/workloads", json={"name": "stack-traced", "arms": arms}
        ).is_success
        answer = http.post(
            "/api/v1/workloads/stack-traced/decide", headers={"X-Request-ID": request_id}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == request_id

    def traces() -> list[dict[str, Any]] | None:
        response = httpx.get(
            f"{stack.url('JAEGER_UI_PORT')}/api/traces",
            params={"service": SERVICE_NAME, "tags": json.dumps({"request_id": request_id})},
            timeout=10,
        )
        found = list(response.json().get("data") or [])
        return found or None

    # The service exports in batches (OTEL_BSP_SCHEDULE_DELAY, 5 s by default).
    found = _wait(f"a trace tagged request_id={request_id} in Jaeger", traces, timeout=60)
    assert len(found) == 1, found
    spans = found[0]["spans"]
    tagged = [
        span for span in spans
        if {"key": "request_id", "type": "string", "value": request_id} in span["tags"]
    ]  # fmt: skip
    assert [span["operationName"] for span in tagged] == ["POST /api/v1/workloads/{name}/decide"], (
        tagged
    )
    processes = found[0]["processes"]
    assert {processes[span["processID"]]["serviceName"] for span in spans} == {SERVICE_NAME}


def test_alertmanager_receives_service_down_when_the_optimizer_stops(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    """Last but one: stops the optimizer. ServiceDown (up{job="llm-optimizer"} == 0 for 1m) is
    the rules' own target-down alert; Prometheus sends it to alertmanager:9093 once it fires."""
    started = time.monotonic()
    _compose(stack, "stop", "optimizer")
    alertmanager = stack.url("ALERTMANAGER_PORT")

    def received() -> list[dict[str, Any]] | None:
        response = httpx.get(
            f"{alertmanager}/api/v2/alerts",
            params={"filter": 'alertname="ServiceDown"'},
            timeout=5,
        )
        response.raise_for_status()
        return list(response.json()) or None

    # scrape (15 s) + evaluation (15 s) + for (1 m) + evaluation (15 s), with some slack
    alerts = _wait("ServiceDown at Alertmanager", received, timeout=180, every=5)
    waited = time.monotonic() - started
    _say(request, f"[stack e2e] ServiceDown reached Alertmanager {waited:.0f}s after the stop")
    labels = alerts[0]["labels"]
    assert labels["job"] == "llm-optimizer", labels
    assert labels["severity"] == "critical", labels
    assert alerts[0]["status"]["state"] == "active", alerts[0]
    # alertmanager.yml routes severity="critical" to its `critical` receiver.
    assert [r["name"] for r in alerts[0]["receivers"]] == ["critical"], alerts[0]
    firing = _prometheus(stack, "/api/v1/alerts")["alerts"]
    assert any(
        a["labels"]["alertname"] == "ServiceDown" and a["state"] == "firing" for a in firing
    ), firing


def test_down_volumes_leaves_nothing_behind(stack: Stack) -> None:
    """Last: `compose.down --volumes` (the fixture's own down then finds nothing to do)."""
    before = project_resources(stack.project)
    assert len(before["containers"]) == len(
        {n for n, s in yaml.safe_load(compose_stack.BASE_FILE.read_text())["services"].items()
         if not s.get("profiles")} - LEFT_OUT
    ), before  # fmt: skip
    assert before["networks"]
    assert len(before["volumes"]) >= 5, before
    compose_tasks.down(_context(stack.project), volumes=True)
    assert project_resources(stack.project) == {"containers": [], "networks": [], "volumes": []}
