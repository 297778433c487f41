"""Alertmanager: amtool accepts the config, routes go by severity, the webhook URL is a setting,
and a real Alertmanager inhibits a down service's latency and error alerts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from ops import monitoring as mon
from ops.core import project
from ops.core.runner import Runner
from ops.monitoring import checks, stack
from ops.tasks import monitoring as tasks
from tests._support import monitoring as support
from tests._support.tools import free_port, require_tool


def test_amtool_accepts_the_committed_config(runner: Runner, amtool: Path) -> None:
    assert checks.amtool_check_config(runner) == []


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "ServiceDown", "severity": "critical"}, "critical"),
        ({"alertname": "HTTPHighLatency", "severity": "warning"}, "warning"),
        ({"alertname": "HighDrift", "severity": "info"}, "info"),
        ({"alertname": "Unlabelled"}, "default"),
    ],
)
def test_routes_go_by_severity(
    runner: Runner, amtool: Path, labels: dict[str, str], receiver: str
) -> None:
    assert support.amtool_routes(runner, labels) == receiver


def test_every_alert_severity_has_its_own_route() -> None:
    config = mon.load_yaml(mon.ALERTMANAGER_CONFIG)
    routed = {route["matchers"][0] for route in config["route"]["routes"]}
    assert routed == {f'severity="{severity}"' for severity in mon.SEVERITIES}


def test_the_webhook_url_is_set_at_deploy_time(
    tmp_path: Path, runner: Runner, amtool: Path
) -> None:
    assert support.WEBHOOK_PLACEHOLDER in mon.ALERTMANAGER_CONFIG.read_text()
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text(checks.render_alertmanager_config("https://hooks.example.com/am"))
    assert checks.amtool_check_config(runner, rendered) == []
    config = mon.load_yaml(rendered)
    urls = [hook["url"] for r in config["receivers"] for hook in r["webhook_configs"]]
    assert urls == ["https://hooks.example.com/am"] * len(config["receivers"])


def test_a_webhook_url_that_is_no_url_is_refused() -> None:
    with pytest.raises(ValueError, match="is not an http\\(s\\) URL"):
        checks.render_alertmanager_config("hooks.example.com")


def test_the_task_renders_from_a_file_and_names_a_missing_one(tmp_path: Path, amtool: Path) -> None:
    url_file = tmp_path / "webhook-url"
    url_file.write_text("https://hooks.example.com/am\n")
    output = tmp_path / "out.yml"
    tasks.alertmanager_config(Context(), output=str(output), webhook_url_file=str(url_file))
    assert "https://hooks.example.com/am" in output.read_text()
    with pytest.raises(Exit, match="does not exist; write the URL into it"):
        tasks.alertmanager_config(
            Context(), output=str(output), webhook_url_file=str(tmp_path / "missing")
        )


def _post_alerts(base: str, alerts: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    body = [
        {**alert, "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}
        for alert in alerts
    ]
    httpx.post(f"{base}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def test_service_down_inhibits_that_services_latency_and_error_alerts(
    tmp_path: Path, start_server: Callable[..., stack.Server]
) -> None:
    require_tool(stack.ALERTMANAGER)
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "alertmanager.yml"
    config.write_text(checks.render_alertmanager_config(f"http://127.0.0.1:{free_port()}/"))
    server = start_server(
        "alertmanager", stack.alertmanager_argv(config, tmp_path / "am-data", address)
    )
    base = f"http://{address}"
    stack.wait_http(server, f"{base}/-/ready")
    down = {"alertname": "ServiceDown", "job": "llm-optimizer",
            "instance": f"a:{project.METRICS_PORT}", "severity": "critical"}  # fmt: skip
    _post_alerts(base, [
        {"labels": down},
        {"labels": {"alertname": "HTTPHighLatency", "job": "llm-optimizer", "severity": "warning"}},
        {"labels": {"alertname": "GRPCHighErrorRatio", "job": "llm-optimizer",
                    "severity": "critical"}},
        {"labels": {"alertname": "HTTPHighLatency", "job": "other-service", "severity": "warning"}},
    ])  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        states = {
            (a["labels"]["alertname"], a["labels"]["job"]): a["status"]
            for a in support.alertmanager_alerts(base)
        }
        if len(states) == 4 and all(s["state"] != "unprocessed" for s in states.values()):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    assert states[("ServiceDown", "llm-optimizer")]["state"] == "active"
    for name in ("HTTPHighLatency", "GRPCHighErrorRatio"):
        assert states[(name, "llm-optimizer")]["state"] == "suppressed"
        assert states[(name, "llm-optimizer")]["inhibitedBy"], name
    assert states[("HTTPHighLatency", "other-service")]["state"] == "active"
