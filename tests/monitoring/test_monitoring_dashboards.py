"""Grafana: dashboards validate against the repo's JSON Schema, match their generator, bind every
query to the ${datasource} variable, and every panel query parses (promtool)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ops import monitoring as mon
from ops.core.runner import Runner
from ops.monitoring import checks, dashboards

OVERVIEW_PANELS = {
    "Request rate", "Error ratio (5xx / all)", "p95 latency", "Decisions per arm",
    "Quality score", "Cost rate", "Drift score", "Optimization cycle duration", "CPU",
    "Memory", "Database pool",
}  # fmt: skip


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(mon.DASHBOARD_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_dashboards_validate_against_the_schema() -> None:
    assert len(mon.dashboard_files()) == 2
    assert checks.dashboards_valid() == []


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    assert checks.dashboards_up_to_date() == []


def test_every_panel_query_parses_with_promtool(runner: Runner, promtool: Path) -> None:
    assert checks.panel_queries_parse(runner) == []


def test_a_query_that_does_not_parse_is_named_by_dashboard_and_panel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: Runner, promtool: Path
) -> None:
    board = dashboards.overview()
    board["panels"][1]["targets"][0]["expr"] = "sum(rate(http_requests_total[5m]"
    (tmp_path / "broken.json").write_text(json.dumps(board))
    monkeypatch.setattr(mon, "DASHBOARDS_DIR", tmp_path)
    problems = checks.panel_queries_parse(runner)
    assert len(problems) == 1
    assert problems[0].startswith("broken.json: panel 'Request rate' (A): ")


def test_the_overview_has_the_panels_asked_for() -> None:
    titles = {panel["title"] for panel in dashboards.overview()["panels"]}
    assert titles >= OVERVIEW_PANELS


def _datasources(node: Any) -> list[Any]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += [value] if key == "datasource" else _datasources(value)
    elif isinstance(node, list):
        for item in node:
            found += _datasources(item)
    return found


@pytest.mark.parametrize("path", mon.dashboard_files(), ids=lambda p: p.name)
def test_no_datasource_is_named_anywhere(path: Path) -> None:
    board = mon.load_dashboard(path)
    assert board["templating"]["list"][0]["name"] == "datasource"
    refs = _datasources(board)
    assert refs
    assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b["panels"][1].update(datasource="Prometheus"), "is not of type 'object'"),
        (
            lambda b: b["panels"][1]["targets"][0].update(
                datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
            ),
            "'${datasource}' was expected",
        ),
        (lambda b: b.pop("uid"), "'uid' is a required property"),
        (lambda b: b["templating"]["list"].pop(0), "'datasource' was expected"),
        (lambda b: b.update(__inputs=[]), "should not be valid"),
    ],
    ids=[
        "datasource-by-name",
        "datasource-by-fixed-uid",
        "no-uid",
        "no-datasource-variable",
        "exported-with-inputs",
    ],
)
def test_the_schema_rejects(mutate: Any, message: str) -> None:
    board = copy.deepcopy(dashboards.overview())
    mutate(board)
    errors = [error.message for error in _validator().iter_errors(board)]
    assert any(message in error for error in errors), errors


def test_provisioning_loads_the_dashboards_and_a_prometheus_datasource() -> None:
    datasources = mon.load_yaml(mon.GRAFANA_DIR / "provisioning/datasources/prometheus.yml")
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = mon.load_yaml(mon.GRAFANA_DIR / "provisioning/dashboards/llm-optimizer.yml")
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/llm-optimizer"
