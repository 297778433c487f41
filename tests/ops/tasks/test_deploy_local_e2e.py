"""`invoke deploy` (local) for real: install, migrate, start, API round trip, `invoke verify`,
a redeploy under steady decide + feedback load with no failed request, down.

Runs the real `invoke` CLI in a subprocess with the ports and state dir overridden through
INVOKE_* variables (as a user would), on free ports and a temporary state dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.core import project
from ops.deploy import load
from ops.deploy import local as deploy_local
from tests._support.api import create_workload, round_trips
from tests._support.tools import free_port, require_tool

pytestmark = pytest.mark.slow


@dataclass
class LocalDeploy:
    state: Path
    env: dict[str, str]
    http_port: int
    ports: tuple[int, int, int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def invoke(
        self, *args: str, timeout: float = 600, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=project.ROOT,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pid(self) -> int | None:
        path = self.state / "service.pid"
        return int(path.read_text()) if path.exists() else None

    def key(self) -> str:
        lines = (self.state / "api-keys").read_text().splitlines()
        return next(line.split()[0] for line in lines if line and not line.startswith("#"))


def _alive(pid: int) -> bool:
    return deploy_local.is_our_service(pid)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeploy]:
    require_tool("uv")
    state = tmp_path_factory.mktemp("deploy-state")
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "INVOKE_LLM_OPTIMIZER_LOCAL_STATE_DIR": str(state),
        "INVOKE_LLM_OPTIMIZER_LOCAL_HTTP_PORT": str(http),
        "INVOKE_LLM_OPTIMIZER_LOCAL_GRPC_PORT": str(grpc),
        "INVOKE_LLM_OPTIMIZER_LOCAL_METRICS_PORT": str(metrics),
        "INVOKE_LLM_OPTIMIZER_LOCAL_READY_TIMEOUT": "180",
    }
    deployment = LocalDeploy(state, env, http, (http, grpc, metrics))
    yield deployment
    # Stop it even when a test failed half-way; then make sure nothing is left running.
    deployment.invoke("deploy.down", timeout=120)
    pid = deployment.pid()
    if pid is not None and _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def test_deploy_serves_a_decide_feedback_round_trip(local: LocalDeploy) -> None:
    result = local.invoke("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is ready (dev)" in result.stdout
    key = local.key()
    assert f"API key      {key}" in result.stdout
    assert "uv run invoke deploy.down" in result.stdout
    pid = local.pid()
    assert pid is not None
    assert _alive(pid)
    for port in local.ports:  # REST, gRPC and metrics all listen
        assert deploy_local.port_in_use("127.0.0.1", port), f"nothing listens on {port}"
    assert "not listening" not in result.stdout

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=local.url, headers=headers, timeout=10) as client:
        assert client.get("/health/ready").status_code == 200
        # The deploy tells the service which code it runs.
        assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", client.get("/version").json()["git_sha"])
        create_workload(client, "e2e-deploy")
        (decision,) = round_trips(client, "e2e-deploy", 1)
        assert decision["arm"] in {"a", "b"}
        report = client.get("/api/v1/workloads/e2e-deploy/report").json()
        arms = {arm["name"]: arm for arm in report["arms"]}
        assert arms[decision["arm"]]["feedback"] == 1

    status = local.invoke("deploy.status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"running, pid {pid}" in status.stdout

    migrate = local.invoke("db.migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    health = local.invoke("health-check")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "the local deployment is healthy" in health.stdout

    backup = local.invoke("db.backup")
    assert backup.returncode == 0, backup.stdout + backup.stderr


def test_verify_passes_every_check_on_the_deployment(local: LocalDeploy) -> None:
    """`invoke verify --target local` finds the URL and key itself and runs all five checks
    (CI is set by the test run: a check that could not run would fail it)."""
    first_pid = local.pid()
    result = local.invoke("verify", "--target", "local", "--strict")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "verify --target local: every check passed" in result.stdout
    for check in ("health", "round trip", "metrics", "restart", "backup"):
        assert re.search(rf"│ {check} +│ ok +│", result.stdout), (check, output)
    assert "contract metrics present with their labels" in result.stdout
    figures = re.search(r"restart under load \(local\): .*?(\d+) requests, (\d+) failed", output)
    assert figures is not None, output
    assert int(figures.group(1)) > 0
    assert int(figures.group(2)) == 0
    print(figures.group(0))
    assert local.pid() != first_pid  # the restart was a real redeploy


def test_verify_fails_and_says_why_when_nothing_runs(tmp_path: Path, local: LocalDeploy) -> None:
    env = {"INVOKE_LLM_OPTIMIZER_LOCAL_STATE_DIR": str(tmp_path / "empty")}
    result = local.invoke("verify", "--target", "local", extra_env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"│ health +│ not run +│ nothing deployed locally", result.stdout)
    assert "5 of 5 checks did not pass" in result.stderr


def test_second_deploy_is_idempotent_and_restarts_onto_the_code(local: LocalDeploy) -> None:
    """The redeploy (stop the old process only once the new one is ready) fails no request of
    a steady decide + feedback load."""
    first_pid = local.pid()
    key = local.key()
    with load.client(local.url, key) as client:
        load.ensure_workload(client)
    with load.steady_load(local.url, key) as figures:
        time.sleep(1.0)
        result = local.invoke("deploy")
        time.sleep(1.0)
    print(f"local redeploy under load: {figures.summary()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "serves until the new one is ready" in result.stdout  # a handover, no fallback
    assert "falling back" not in result.stdout
    assert figures.requests > 0
    assert figures.failed == 0, figures.summary()
    second_pid = local.pid()
    assert second_pid is not None
    assert second_pid != first_pid
    assert first_pid is None or not _alive(first_pid)
    assert local.key() == key  # the development key is kept
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=local.url, headers=headers, timeout=10) as client:
        assert client.get("/health/ready").status_code == 200
        # The data survived the restart.
        report = client.get("/api/v1/workloads/e2e-deploy/report")
        assert report.status_code == 200, report.text
        assert sum(arm["feedback"] for arm in report.json()["arms"]) == 1


def test_a_redeploy_that_cannot_start_leaves_the_previous_instance_serving(
    local: LocalDeploy,
) -> None:
    """The new process fails (its metrics listener cannot bind an address that is not ours):
    the deploy fails with the log, and the instance that ran before still serves."""
    pid = local.pid()
    assert pid is not None
    result = local.invoke("deploy", extra_env={"LLM_OPTIMIZER_SERVER__METRICS_HOST": "192.0.2.1"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the service exited (code " in result.stderr
    assert "falling back" not in result.stdout
    assert local.pid() == pid
    assert _alive(pid)
    assert deploy_local.http_get(f"{local.url}/health/ready")[0] == 200


def test_a_redeploy_over_an_instance_that_holds_its_own_ports_falls_back(
    local: LocalDeploy,
) -> None:
    """An instance started before the deploy handed over shared sockets binds its ports itself
    (no SO_REUSEPORT): the new process cannot start beside it, so the deploy stops it and starts
    again (the old stop -> start), and says so."""
    pid = local.pid()
    assert pid is not None
    os.killpg(pid, signal.SIGTERM)
    while _alive(pid):
        time.sleep(0.1)
    http, grpc, metrics = local.ports
    settings = {
        project.env("environment"): "development",
        project.env("data_dir"): str(local.state / "data"),
        project.env("auth", "api_keys_file"): str(local.state / "api-keys"),
        project.env("server", "host"): "127.0.0.1",
        project.env("server", "http_port"): str(http),
        project.env("server", "grpc_port"): str(grpc),
        project.env("server", "metrics_port"): str(metrics),
    }
    with (local.state / "legacy.log").open("wb") as log:
        legacy = subprocess.Popen(
            [str(local.state / "venv" / "bin" / project.SERVICE_COMMAND), "serve"],
            env={**os.environ, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (local.state / "service.pid").write_text(f"{legacy.pid}\n")
    deadline = time.monotonic() + 120
    while deploy_local.http_get(f"{local.url}/health/ready")[0] != 200:
        assert legacy.poll() is None, (local.state / "legacy.log").read_text()
        assert time.monotonic() < deadline, (local.state / "legacy.log").read_text()
        time.sleep(0.2)

    result = local.invoke("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"the new instance exited beside pid {legacy.pid}" in result.stdout
    assert "falling back to stop, then start" in result.stdout
    assert legacy.wait(30) == 0
    assert local.pid() not in (None, legacy.pid)
    assert httpx.get(f"{local.url}/health/ready", timeout=5).status_code == 200


def test_down_stops_the_service_and_frees_its_ports(local: LocalDeploy) -> None:
    pid = local.pid()
    assert pid is not None
    result = local.invoke("deploy.down")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "its ports are free" in result.stdout
    assert not _alive(pid)
    assert local.pid() is None
    for port in local.ports:
        assert not deploy_local.port_in_use("127.0.0.1", port), f"port {port} still in use"
    status = local.invoke("deploy.status")
    assert status.returncode == 3
    again = local.invoke("deploy.down")
    assert again.returncode == 0
    assert "no local deployment is running" in again.stdout


def test_a_service_that_cannot_start_is_reported_with_its_log(local: LocalDeploy) -> None:
    """serve fails to bind its metrics listener: deploy fails, shows the log, leaves no pid."""
    result = local.invoke(
        "deploy",
        extra_env={"LLM_OPTIMIZER_SERVER__METRICS_HOST": "192.0.2.1"},  # not ours
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the service exited (code " in result.stderr
    assert "before becoming ready; last lines of" in result.stderr
    assert local.pid() is None
    for port in local.ports:
        assert not deploy_local.port_in_use("127.0.0.1", port), f"port {port} still in use"
