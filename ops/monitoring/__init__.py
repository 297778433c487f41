"""Monitoring as code: the files under ``monitoring/`` and what can be derived from them.

Alert and recording rules, their promtool tests, the runbooks, the Alertmanager config, the
Grafana dashboards and the list of exporter metrics are plain files; this package reads them
(never copies facts out of them) so the checks (``checks``), the local stack (``stack``) and the
dashboard generator (``dashboards``) agree with what is committed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import promql_parser
import yaml

from ops.core import project

MONITORING_DIR: Final = project.MONITORING_DIR
PROMETHEUS_DIR: Final = MONITORING_DIR / "prometheus"
RULES_DIR: Final = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR: Final = PROMETHEUS_DIR / "tests"
RUNBOOKS_DIR: Final = MONITORING_DIR / "runbooks"
ALERTMANAGER_CONFIG: Final = MONITORING_DIR / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR: Final = MONITORING_DIR / "grafana"
DASHBOARDS_DIR: Final = GRAFANA_DIR / "dashboards"
DASHBOARD_SCHEMA: Final = GRAFANA_DIR / "dashboard.schema.json"
EXPORTER_METRICS_FILE: Final = MONITORING_DIR / "exporter-metrics.txt"
CONTRACT: Final = project.ROOT / "docs" / "contract.md"

# The two Prometheus config variants; both load rules/*.yml beside them.
PROMETHEUS_CONFIGS: Final[Mapping[str, Path]] = {
    "compose": PROMETHEUS_DIR / "prometheus.yml",
    "kubernetes": PROMETHEUS_DIR / "prometheus-kubernetes.yml",
}

# The scrape job of the optimizer service; rules select on it (job="llm-optimizer"), and the
# chart's ServiceMonitor derives the same name from app.kubernetes.io/name.
SERVICE_JOB: Final = project.CHART_NAME

# Every alert's runbook_url is this base + the runbook's path in the repository.
RUNBOOK_BASE_URL: Final = "https://github.com/llm-auto-optimizer/llm-auto-optimizer/blob/main/"

SEVERITIES: Final = ("critical", "warning", "info")


@dataclass(frozen=True)
class Rule:
    """One alerting or recording rule, with where it is defined."""

    file: Path
    group: str
    name: str  # the alert name or the recorded metric name
    expr: str
    is_alert: bool
    for_: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def rule_files() -> list[Path]:
    """The committed rule files, sorted."""
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    """The committed promtool test files, sorted."""
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_rules(files: list[Path] | None = None) -> list[Rule]:
    """Every rule of the given (default: committed) rule files, in file order."""
    rules: list[Rule] = []
    for path in files if files is not None else rule_files():
        for group in load_yaml(path).get("groups", []):
            for raw in group.get("rules", []):
                is_alert = "alert" in raw
                rules.append(
                    Rule(
                        file=path,
                        group=str(group["name"]),
                        name=str(raw["alert"] if is_alert else raw["record"]),
                        expr=str(raw["expr"]),
                        is_alert=is_alert,
                        for_=str(raw.get("for", "")),
                        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
                        annotations={
                            str(k): str(v) for k, v in (raw.get("annotations") or {}).items()
                        },
                    )
                )
    return rules


def alerts() -> list[Rule]:
    """The committed alerting rules."""
    return [rule for rule in load_rules() if rule.is_alert]


def runbook_path(alert: str) -> Path:
    """Where the runbook of an alert lives."""
    return RUNBOOKS_DIR / f"{alert}.md"


def runbook_url(alert: str) -> str:
    """The runbook_url an alert must carry."""
    return RUNBOOK_BASE_URL + runbook_path(alert).relative_to(project.ROOT).as_posix()


def resolve_runbook_url(url: str) -> Path | None:
    """The repository file a runbook_url points at, or None when it is not of our form."""
    if not url.startswith(RUNBOOK_BASE_URL):
        return None
    return project.ROOT / url.removeprefix(RUNBOOK_BASE_URL)


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus duration such as ``1h30m`` (the forms our files use)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 1d)")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


# --- PromQL -------------------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (``foo`` and ``{__name__="foo"}`` alike).

    Raises ``ValueError`` for an expression that does not parse, or that selects by a
    ``__name__`` regex (which no cross-check could prove).
    """
    try:
        tree = promql_parser.parse(expr)
    except Exception as exc:  # the parser raises its own ValueError subclasses
        raise ValueError(f"PromQL does not parse: {expr!r}: {exc}") from exc
    names: set[str] = set()
    problems: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name != "__name__":
                    continue
                if matcher.op == promql_parser.MatchOp.Equal:
                    names.add(matcher.value)
                else:
                    problems.append(f"selects metric names by pattern: {matcher}")

    promql_parser.walk(tree, visit)
    if problems:
        raise ValueError(f"{expr!r}: {'; '.join(problems)}")
    return names


# Labels Prometheus adds at scrape time (never in a target's own exposition).
TARGET_LABELS: Final = frozenset({"job", "instance", "namespace", "pod"})


def equality_matchers(expr: str) -> set[tuple[str, str, str]]:
    """(metric, label, value) for every ``label="value"`` matcher on a named metric."""
    found: set[tuple[str, str, str]] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            for matcher in node.matchers.matchers:
                if matcher.op == promql_parser.MatchOp.Equal and matcher.name != "__name__":
                    found.add((node.name, matcher.name, matcher.value))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


# Grafana template variables our dashboards use, and what stands in for them when a panel's
# query is checked by promtool (which knows no Grafana variables).
GRAFANA_VARIABLE_STANDINS: Final[Mapping[str, str]] = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${job}": SERVICE_JOB,
    "$job": SERVICE_JOB,
    "${workload}": ".*",
    "$workload": ".*",
}


def substitute_grafana_variables(expr: str) -> str:
    """A panel query with its Grafana variables replaced by values PromQL accepts."""
    for variable in sorted(GRAFANA_VARIABLE_STANDINS, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLE_STANDINS[variable])
    return expr


# --- dashboards ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL target of one dashboard panel."""

    dashboard: str  # file name
    panel: str  # panel title
    ref_id: str
    expr: str


def dashboard_files() -> list[Path]:
    """The committed dashboard JSON files, sorted."""
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    """Parse one dashboard file."""
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def panel_queries(files: list[Path] | None = None) -> list[PanelQuery]:
    """Every PromQL target of every panel of the given (default: committed) dashboards."""
    queries: list[PanelQuery] = []
    for path in files if files is not None else dashboard_files():
        dashboard = load_dashboard(path)
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if "expr" in target:
                    queries.append(
                        PanelQuery(
                            path.name, str(panel.get("title", "")), target["refId"], target["expr"]
                        )
                    )
    return queries


# --- metrics ------------------------------------------------------------------------------------


def exporter_metrics_by_exporter() -> dict[str, frozenset[str]]:
    """The allow-list, by exporter: ``[postgres_exporter]`` sections of one name per line."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for number, raw in enumerate(EXPORTER_METRICS_FILE.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], set())
        elif current is None:
            raise ValueError(f"{EXPORTER_METRICS_FILE}:{number}: a name before any [exporter] line")
        elif not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line):
            raise ValueError(f"{EXPORTER_METRICS_FILE}:{number}: not a metric name: {line!r}")
        else:
            current.add(line)
    return {name: frozenset(names) for name, names in sections.items()}


def allowed_exporter_metrics() -> frozenset[str]:
    """Every name in the exporter allow-list."""
    return frozenset().union(*exporter_metrics_by_exporter().values())


def exposition_names(text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (histograms give _bucket, _sum, _count)."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if match:
            names.add(match.group(0))
    return names


@dataclass(frozen=True)
class ContractMetric:
    """One metric of the contract's Metrics section."""

    name: str  # the name, or a prefix such as ``process_`` for ``process_*``
    labels: tuple[str, ...]
    histogram: bool

    @property
    def is_prefix(self) -> bool:
        """True for the ``process_*``/``python_*`` families."""
        return self.name.endswith("_")

    def sample_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for it (a histogram's _bucket, _sum and _count)."""
        if self.histogram:
            return tuple(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        return (self.name,)


def contract_metrics(contract: Path = CONTRACT) -> list[ContractMetric]:
    """The metrics the product contract names (docs/contract.md, section "Metrics")."""
    text = contract.read_text(encoding="utf-8")
    match = re.search(r"^## Metrics.*?$(.*?)^## ", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"{contract} has no '## Metrics' section")
    metrics = []
    for line in match.group(1).splitlines():
        tokens = list(re.finditer(r"`([a-z_:]+)(\*)?(?:\{([a-z_,]*)\})?`", line))
        for index, token in enumerate(tokens):
            end = tokens[index + 1].start() if index + 1 < len(tokens) else len(line)
            histogram = "(histogram" in line[token.end() : end]
            labels = tuple(filter(None, (token.group(3) or "").split(",")))
            metrics.append(ContractMetric(token.group(1), labels, histogram))
    if not metrics:
        raise ValueError(f"no metric names found in the Metrics section of {contract}")
    return metrics


def missing_contract_metrics(exposition: str) -> list[str]:
    """The contract's metrics a scrape (Prometheus text format) lacks, each with why: a sample
    name absent, or a sample whose label names differ from the contract's."""
    names = exposition_names(exposition)
    labels: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", line)
        if match is None or line.startswith("#"):
            continue
        found = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(2) or ""))
        labels.setdefault(match.group(1), set()).update(found)
    problems = []
    for metric in contract_metrics():
        if metric.is_prefix:
            if not any(name.startswith(metric.name) for name in names):
                problems.append(f"{metric.name}* absent")
            continue
        for name in metric.sample_names():
            expected = set(metric.labels) | ({"le"} if name.endswith("_bucket") else set())
            if name not in names:
                problems.append(f"{name} absent")
            elif labels[name] != expected:
                problems.append(f"{name} labels {sorted(labels[name])} != {sorted(expected)}")
    return problems


def referenced_label_values() -> dict[tuple[str, str, str], set[str]]:
    """(metric, label, value) -> where, for every equality matcher of every rule and panel,
    except on the labels Prometheus adds itself (job, instance, ...)."""
    used: dict[tuple[str, str, str], set[str]] = {}
    for rule in load_rules():
        for key in equality_matchers(rule.expr):
            used.setdefault(key, set()).add(f"{rule.file.name}: {rule.name}")
    for query in panel_queries():
        for key in equality_matchers(substitute_grafana_variables(query.expr)):
            used.setdefault(key, set()).add(f"{query.dashboard}: panel {query.panel!r}")
    return {key: where for key, where in used.items() if key[1] not in TARGET_LABELS}


def exposition_label_values(text: str) -> set[tuple[str, str, str]]:
    """(sample name, label, value) of every labelled sample in a text exposition."""
    found: set[tuple[str, str, str]] = set()
    for line in text.splitlines():
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", line)
        if match is None or line.startswith("#"):
            continue
        for label, value in re.findall(
            r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2)
        ):
            found.add((match.group(1), label, value))
    return found


def referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used, over every rule and panel; recorded names excluded."""
    rules = load_rules()
    recorded = {rule.name for rule in rules if not rule.is_alert}
    used: dict[str, set[str]] = {}
    for rule in rules:
        kind = "alert" if rule.is_alert else "record"
        for name in metric_names(rule.expr):
            used.setdefault(name, set()).add(f"{rule.file.name}: {kind} {rule.name}")
    for query in panel_queries():
        where = f"{query.dashboard}: panel {query.panel!r} ({query.ref_id})"
        for name in metric_names(substitute_grafana_variables(query.expr)):
            used.setdefault(name, set()).add(where)
    return {name: places for name, places in used.items() if name not in recorded}
