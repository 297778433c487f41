"""Every check of ``monitoring/``: with Prometheus' own tools (promtool, amtool) and in Python.

Each check returns a list of problems (empty = passed); ``invoke monitoring.check`` runs them all
and the tests under ``tests/monitoring/`` call them one by one. Checks that need a tool take a
``Runner`` so the command is printed and a missing tool says how to install it.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ops import monitoring as mon
from ops.core.runner import Runner
from ops.monitoring import dashboards

REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
RUNBOOK_SECTIONS = ("## Meaning", "## Check", "## Fix")


# --- with the real tools ------------------------------------------------------------------------


def _run(runner: Runner, argv: list[str], **kwargs: Any) -> tuple[int, str]:
    result = runner.run(argv, check=False, capture=True, **kwargs)
    if result is None:  # dry run
        return 0, ""
    return result.exited, (result.stdout + result.stderr).strip()


def promtool_check_configs(runner: Runner) -> list[str]:
    """``promtool check config`` on both variants (which also checks the rule files they load)."""
    problems = []
    for variant, path in mon.PROMETHEUS_CONFIGS.items():
        code, output = _run(runner, ["promtool", "check", "config", str(path)])
        if code:
            problems.append(f"promtool check config ({variant}, {path.name}) failed:\n{output}")
    return problems


def promtool_check_rules(runner: Runner) -> list[str]:
    """``promtool check rules`` on every rule file."""
    files = [str(path) for path in mon.rule_files()]
    if not files:
        return [f"no rule files in {mon.RULES_DIR}"]
    code, output = _run(runner, ["promtool", "check", "rules", *files])
    return [f"promtool check rules failed:\n{output}"] if code else []


def promtool_test_rules(runner: Runner, test_files: Iterable[Path] | None = None) -> list[str]:
    """``promtool test rules`` on every test file."""
    files = [str(path) for path in (test_files or mon.rule_test_files())]
    if not files:
        return [f"no promtool test files in {mon.RULE_TESTS_DIR}"]
    code, output = _run(runner, ["promtool", "test", "rules", *files])
    return [f"promtool test rules failed:\n{output}"] if code else []


def amtool_check_config(runner: Runner, path: Path = mon.ALERTMANAGER_CONFIG) -> list[str]:
    """``amtool check-config`` on the Alertmanager config."""
    code, output = _run(runner, ["amtool", "check-config", str(path)])
    return [f"amtool check-config {path.name} failed:\n{output}"] if code else []


def panel_queries_parse(runner: Runner) -> list[str]:
    """Every panel query parses as PromQL, checked by promtool in a temporary rules file.

    Grafana variables are replaced by stand-ins first (``$__rate_interval`` → ``5m`` ...).
    """
    queries = mon.panel_queries()
    if not queries:
        return ["no panel queries found in the dashboards"]
    rules = [
        {
            "record": f"dashboard_panel_query_{index}",
            "expr": mon.substitute_grafana_variables(q.expr),
        }
        for index, q in enumerate(queries)
    ]
    with tempfile.TemporaryDirectory(prefix="panel-queries-") as tmp:
        path = Path(tmp) / "panel-queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
        code, output = _run(runner, ["promtool", "check", "rules", str(path)])
    if not code:
        return []
    problems = []
    for match in re.finditer(r"(\d+):\d+: group \"panels\", rule (\d+), \"[^\"]*\": (.*)", output):
        query = queries[int(match.group(2)) - 1]
        problems.append(
            f"{query.dashboard}: panel {query.panel!r} ({query.ref_id}): {match.group(3)}"
        )
    return problems or [f"promtool rejected the panel queries:\n{output}"]


def for_is_what_holds_alerts(runner: Runner) -> list[str]:
    """Each "not firing before `for:`" test case fails once `for:` is removed from the rules.

    This proves the not-firing cases are held back by `for:` alone (the condition is already
    true one evaluation before), not by a condition that is still false.
    """
    cases = not_firing_cases()
    with tempfile.TemporaryDirectory(prefix="rules-without-for-") as tmp:
        root = Path(tmp)
        shutil.copytree(mon.RULE_TESTS_DIR, root / "tests")
        (root / "rules").mkdir()
        for path in mon.rule_files():
            data = mon.load_yaml(path)
            for group in data.get("groups", []):
                for rule in group.get("rules", []):
                    rule.pop("for", None)
            (root / "rules" / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
        code, output = _run(
            runner,
            ["promtool", "test", "rules", *sorted(str(p) for p in (root / "tests").glob("*.yml"))],
        )
    failed = {
        (match.group(1), mon.duration_seconds(match.group(2)))
        for match in re.finditer(r"alertname: (\w+), time: (\w+),", output)
    }
    if code == 0:
        return [
            "with every `for:` removed, promtool test rules still passes: the not-firing "
            "cases do not depend on `for:`"
        ]
    return [
        f"{alert}: the not-firing case at {seconds}s passes even without `for:`; make the "
        "alert's condition true one evaluation before `for:` elapses"
        for alert, seconds in sorted(cases)
        if (alert, seconds) not in failed
    ]


# --- in Python ----------------------------------------------------------------------------------


def lint_alerts() -> list[str]:
    """Every alert follows docs/monitoring.md ("Alerts"): for, severity, summary, description,
    runbook_url."""
    problems: list[str] = []
    seen: set[str] = set()
    for alert in mon.alerts():
        where = f"{alert.file.name}: {alert.name}"
        if alert.name in seen:
            problems.append(f"{where}: alert name defined twice")
        seen.add(alert.name)
        try:
            if mon.duration_seconds(alert.for_) <= 0:
                problems.append(f"{where}: `for:` must be non-zero")
        except ValueError:
            problems.append(f"{where}: `for:` missing or invalid ({alert.for_!r})")
        if alert.labels.get("severity") not in mon.SEVERITIES:
            problems.append(f"{where}: labels.severity must be one of {', '.join(mon.SEVERITIES)}")
        for key in REQUIRED_ANNOTATIONS:
            if not alert.annotations.get(key, "").strip():
                problems.append(f"{where}: annotations.{key} is missing")
        description = alert.annotations.get("description", "")
        if "$labels" not in description or "$value" not in description:
            problems.append(
                f"{where}: the description must use {{{{ $labels }}}} and {{{{ $value }}}}"
            )
        url = alert.annotations.get("runbook_url", "")
        if url and url != mon.runbook_url(alert.name):
            problems.append(
                f"{where}: runbook_url is {url!r}; expected {mon.runbook_url(alert.name)!r}"
            )
    return problems


def runbooks_resolve() -> list[str]:
    """Every runbook_url resolves to a runbook in the repo with the expected sections, and
    every runbook belongs to an alert."""
    problems = []
    names = set()
    for alert in mon.alerts():
        names.add(alert.name)
        url = alert.annotations.get("runbook_url", "")
        path = mon.resolve_runbook_url(url)
        if path is None:
            problems.append(
                f"{alert.name}: runbook_url {url!r} does not start with {mon.RUNBOOK_BASE_URL}"
            )
            continue
        if not path.is_file():
            problems.append(f"{alert.name}: runbook_url points at {path}, which does not exist")
            continue
        text = path.read_text(encoding="utf-8")
        if not text.startswith(f"# {alert.name}\n"):
            problems.append(f"{path.name}: must start with the heading '# {alert.name}'")
        severity = f"Severity: **{alert.labels.get('severity')}**"
        if severity not in text:
            problems.append(f"{path.name}: must say '{severity}', as the rule does")
        for section in RUNBOOK_SECTIONS:
            if f"\n{section}\n" not in text:
                problems.append(f"{path.name}: missing section '{section}'")
    for path in sorted(mon.RUNBOOKS_DIR.glob("*.md")):
        if path.stem not in names:
            problems.append(f"{path.name}: runbook of no alert (remove it or add the alert)")
    return problems


@dataclass(frozen=True)
class AlertCase:
    """One ``alert_rule_test`` entry."""

    file: Path
    group: str
    alert: str
    seconds: int
    exp_alerts: list[dict[str, Any]]


def _alert_cases() -> tuple[list[AlertCase], dict[Path, int], set[str]]:
    cases: list[AlertCase] = []
    intervals: dict[Path, int] = {}
    tested_exprs: set[str] = set()
    for path in mon.rule_test_files():
        data = mon.load_yaml(path)
        intervals[path] = mon.duration_seconds(str(data.get("evaluation_interval", "1m")))
        for group in data.get("tests", []):
            for case in group.get("alert_rule_test", []) or []:
                cases.append(
                    AlertCase(
                        path,
                        str(group.get("name", "")),
                        str(case["alertname"]),
                        mon.duration_seconds(str(case["eval_time"])),
                        list(case.get("exp_alerts") or []),
                    )
                )
            for case in group.get("promql_expr_test", []) or []:
                tested_exprs.add(str(case["expr"]))
    return cases, intervals, tested_exprs


def not_firing_cases() -> set[tuple[str, int]]:
    """(alert, seconds) of every not-firing case that sits one evaluation before a firing one."""
    cases, intervals, _ = _alert_cases()
    firing = {(c.file, c.group, c.alert, c.seconds) for c in cases if c.exp_alerts}
    return {
        (c.alert, c.seconds)
        for c in cases
        if not c.exp_alerts and (c.file, c.group, c.alert, c.seconds + intervals[c.file]) in firing
    }


def rule_tests_cover_everything() -> list[str]:
    """Every alert has a not-firing case one evaluation before a firing case whose expected
    alerts carry the alert's severity and exactly its annotation keys; every recording rule is
    tested by value."""
    cases, intervals, tested_exprs = _alert_cases()
    problems = []
    for alert in mon.alerts():
        mine = [c for c in cases if c.alert == alert.name]
        firing = [c for c in mine if c.exp_alerts]
        if not firing:
            problems.append(f"{alert.name}: no promtool test case where it fires")
            continue
        for case in firing:
            before = case.seconds - intervals[case.file]
            if not any(
                c.group == case.group
                and c.file == case.file
                and c.seconds == before
                and not c.exp_alerts
                for c in mine
            ):
                problems.append(
                    f"{alert.name}: {case.file.name} ({case.group!r}) fires at {case.seconds}s "
                    f"but has no not-firing case at {before}s (one evaluation before)"
                )
            for expected in case.exp_alerts:
                labels = expected.get("exp_labels") or {}
                if labels.get("severity") != alert.labels.get("severity"):
                    problems.append(
                        f"{alert.name}: a firing case does not expect its severity label"
                    )
                keys = set((expected.get("exp_annotations") or {}).keys())
                if keys != set(alert.annotations):
                    problems.append(
                        f"{alert.name}: a firing case expects annotations {sorted(keys)}, "
                        f"the rule has {sorted(alert.annotations)}"
                    )
    for rule in mon.load_rules():
        if not rule.is_alert and rule.name not in tested_exprs:
            problems.append(f"recording rule {rule.name}: no promql_expr_test evaluates it")
    return problems


def recorded_names_defined() -> list[str]:
    """Names with a colon (recording-rule names) used anywhere are defined by a recording rule."""
    recorded = {rule.name for rule in mon.load_rules() if not rule.is_alert}
    used: dict[str, set[str]] = {}
    for rule in mon.load_rules():
        for name in mon.metric_names(rule.expr):
            used.setdefault(name, set()).add(f"{rule.file.name}: {rule.name}")
    for query in mon.panel_queries():
        for name in mon.metric_names(mon.substitute_grafana_variables(query.expr)):
            used.setdefault(name, set()).add(f"{query.dashboard}: {query.panel}")
    return [
        f"{name} (used by {', '.join(sorted(places))}) is no recording rule"
        for name, places in sorted(used.items())
        if ":" in name and name not in recorded
    ]


def dashboards_valid() -> list[str]:
    """Every dashboard validates against monitoring/grafana/dashboard.schema.json; uids unique."""
    schema = json.loads(mon.DASHBOARD_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    uids: dict[str, str] = {}
    files = mon.dashboard_files()
    if not files:
        return [f"no dashboards in {mon.DASHBOARDS_DIR}"]
    for path in files:
        data = mon.load_dashboard(path)
        for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            location = "/".join(str(part) for part in error.absolute_path) or "(top)"
            problems.append(f"{path.name}: {location}: {error.message}")
        uid = str(data.get("uid"))
        if uid in uids:
            problems.append(f"{path.name}: uid {uid!r} already used by {uids[uid]}")
        uids[uid] = path.name
    return problems


def dashboards_up_to_date() -> list[str]:
    """The committed dashboard JSON is what ops/monitoring/dashboards.py generates."""
    problems = []
    expected = dashboards.render()
    for name, text in expected.items():
        path = mon.DASHBOARDS_DIR / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(
                f"{path.name} differs from ops/monitoring/dashboards.py; run "
                "`uv run invoke monitoring.dashboards` and commit the result"
            )
    for path in mon.dashboard_files():
        if path.name not in expected:
            problems.append(f"{path.name} is not generated by ops/monitoring/dashboards.py")
    return problems


def cross_check(exposition: str) -> list[str]:
    """Every metric a rule or panel names is exported by the service (in ``exposition``, its
    /metrics text) or is in the exporter allow-list."""
    exported = mon.exposition_names(exposition)
    allowed = mon.allowed_exporter_metrics()
    return [
        f"{name} is neither exported by the service nor in {mon.EXPORTER_METRICS_FILE.name} "
        f"(used by {'; '.join(sorted(places))})"
        for name, places in sorted(mon.referenced_metrics().items())
        if name not in exported and name not in allowed
    ]


def cross_check_label_values(exposition: str) -> list[str]:
    """Every ``label="value"`` a rule or panel matches on a service metric occurs in the
    service's exposition (a selector on a value the service never sets can never match)."""
    exported = mon.exposition_label_values(exposition)
    allowed = mon.allowed_exporter_metrics()
    return [
        f'{metric}{{{label}="{value}"}} never occurs in the service\'s metrics '
        f"(used by {'; '.join(sorted(places))})"
        for (metric, label, value), places in sorted(mon.referenced_label_values().items())
        if metric not in allowed and (metric, label, value) not in exported
    ]


def render_alertmanager_config(webhook_url: str) -> str:
    """The committed Alertmanager config with every webhook pointed at ``webhook_url``."""
    if not re.match(r"^https?://[^\s/]+", webhook_url):
        raise ValueError(
            f"webhook URL {webhook_url!r} is not an http(s) URL; set it to the receiver's "
            "full URL, e.g. https://hooks.example.com/alertmanager"
        )
    data = mon.load_yaml(mon.ALERTMANAGER_CONFIG)
    count = 0
    for receiver in data.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []) or []:
            webhook["url"] = webhook_url
            count += 1
    if not count:
        raise ValueError(f"{mon.ALERTMANAGER_CONFIG} has no webhook receiver to set")
    header = "# Rendered from monitoring/alertmanager/alertmanager.yml; do not edit.\n"
    return header + yaml.safe_dump(data, sort_keys=False)


# Checks that need no tool, by name (the order `monitoring.check` runs them in).
PYTHON_CHECKS: dict[str, Callable[[], list[str]]] = {
    "alerts follow the style": lint_alerts,
    "runbooks resolve": runbooks_resolve,
    "rule tests cover every alert and recording rule": rule_tests_cover_everything,
    "recording-rule names are defined": recorded_names_defined,
    "dashboards validate against the schema": dashboards_valid,
    "dashboards match their generator": dashboards_up_to_date,
}

# Checks that run promtool/amtool, by name.
TOOL_CHECKS: dict[str, Callable[[Runner], list[str]]] = {
    "promtool check config (compose, kubernetes)": promtool_check_configs,
    "promtool check rules": promtool_check_rules,
    "promtool test rules": promtool_test_rules,
    "not-firing cases are held by `for:` alone": for_is_what_holds_alerts,
    "panel queries parse (promtool)": panel_queries_parse,
    "amtool check-config": amtool_check_config,
}


def _report(name: str, problems: list[str]) -> bool:
    print(f"{'ok  ' if not problems else 'FAIL'} {name}", flush=True)
    for problem in problems:
        print("     " + problem.replace("\n", "\n     "), flush=True)
    return not problems


def scrape_problems(metrics_url: str) -> list[str]:
    """The metrics cross-check against the service answering at ``metrics_url``."""
    import httpx

    try:
        exposition = httpx.get(metrics_url, timeout=5.0).raise_for_status().text
    except httpx.HTTPError as exc:
        return [
            f"cannot scrape {metrics_url} ({exc}); start the service (`uv run invoke deploy`) and "
            "drive some traffic (`llm-optimizer-service simulate`), pass --metrics-url, or "
            "use --offline"
        ]
    return cross_check(exposition) + cross_check_label_values(exposition)


def run_all(runner: Runner, *, metrics_url: str | None) -> list[str]:
    """Every check, each reported as it finishes (``ok``/``FAIL`` and its problems); the names
    of the failed ones. ``metrics_url`` None skips the cross-check against a running service
    (and says so)."""
    failed = [name for name, check in PYTHON_CHECKS.items() if not _report(name, check())]
    failed += [name for name, check in TOOL_CHECKS.items() if not _report(name, check(runner))]
    name = "metrics cross-check against the running service"
    if metrics_url is None:
        print(f"skip {name} (--offline)")
    elif not _report(name, scrape_problems(metrics_url)):
        failed.append(name)
    return failed
