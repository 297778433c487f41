"""The Invoke tasks: `monitoring.up` runs a real Prometheus + Alertmanager against a running
service; `--dry-run` starts nothing; `monitoring.check` fails naming a failed check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from ops import monitoring as mon
from ops.core import project
from ops.monitoring import stack
from ops.tasks import monitoring as tasks
from tests._support.service import RunningService
from tests._support.tools import free_port, require_tool


def _invoke(*args: str, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LLM_OPTIMIZER_OPS_STATE": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=project.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_up_scrapes_a_running_service_and_stops_both_servers(
    active_service: RunningService, tmp_path: Path
) -> None:
    for tool in (stack.PROMETHEUS, stack.ALERTMANAGER, "promtool", "amtool"):
        require_tool(tool)
    prometheus, alertmanager = free_port(), free_port()
    process = _invoke(
        "monitoring.up", f"--service=127.0.0.1:{active_service.metrics_port}",
        f"--prometheus-port={prometheus}", f"--alertmanager-port={alertmanager}",
        "--duration=60", "--scrape-interval=1s", state=tmp_path,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{prometheus}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                up = stack.query(url, f'up{{job="{mon.SERVICE_JOB}"}} == 1')
            except httpx.HTTPError:
                up = []
            if up:
                break
            assert time.monotonic() < deadline, "Prometheus never scraped the service"
            time.sleep(0.5)
        rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {g["file"] for g in rules} == {str(p) for p in mon.rule_files()}
        assert httpx.get(f"http://127.0.0.1:{alertmanager}/-/ready", timeout=5).status_code == 200
    finally:
        process.terminate()  # SIGTERM (Ctrl-C's SIGINT takes the same path): both servers stop
        output = process.communicate(timeout=30)[0]
    assert "Prometheus   http://127.0.0.1:" in output
    for port in (prometheus, alertmanager):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)


def test_up_dry_run_prints_the_commands_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.up(Context(), service="127.0.0.1:1", prometheus_port=1, alertmanager_port=2,
             dry_run=True)  # fmt: skip
    captured = capsys.readouterr()
    assert "[dry-run] prometheus --config.file=" in captured.err
    assert "--web.listen-address=127.0.0.1:1" in captured.err
    assert "[dry-run] prometheus-alertmanager" in captured.err
    assert "- 127.0.0.1:1" in captured.out  # the generated scrape target


def test_check_fails_naming_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "ops.monitoring.checks.PYTHON_CHECKS", {"a failing check": lambda: ["broken"]}
    )
    monkeypatch.setattr("ops.monitoring.checks.TOOL_CHECKS", {})
    with pytest.raises(Exit, match="monitoring checks failed: a failing check"):
        tasks.check(Context(), offline=True)


def test_check_cross_checks_a_running_service(
    active_service: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ops.monitoring.checks.PYTHON_CHECKS", {})
    monkeypatch.setattr("ops.monitoring.checks.TOOL_CHECKS", {})
    tasks.check(Context(), metrics_url=active_service.metrics_url)  # passes: nothing missing
    with pytest.raises(Exit, match="metrics cross-check"):
        tasks.check(Context(), metrics_url=f"http://127.0.0.1:{free_port()}/metrics")
