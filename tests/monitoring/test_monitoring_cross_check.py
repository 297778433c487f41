"""Cross-check against the real service: every metric a rule, recording rule or dashboard panel
names is exported by the running service (after a decide + feedback round) or is an exporter
metric on the allow-list; and the service exports the contract's metrics with their labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ops import monitoring as mon
from ops.monitoring import checks
from tests._support import monitoring as support
from tests._support.service import RunningService
from tests.monitoring.traffic import scrape


def test_every_metric_of_rules_and_panels_is_exported_or_an_exporter_metric(
    active_service: RunningService,
) -> None:
    problems = checks.cross_check(scrape(active_service.metrics_url))
    assert not problems, "\n".join(problems)


def test_every_label_value_rules_match_occurs_in_the_service_metrics(
    active_service: RunningService,
) -> None:
    problems = checks.cross_check_label_values(scrape(active_service.metrics_url))
    assert not problems, "\n".join(problems)


def test_the_cross_check_names_a_metric_nobody_exports() -> None:
    problems = checks.cross_check("up 1\n")
    assert any(
        p.startswith(
            "optimization_decisions_total is neither exported by the service nor in "
            "exporter-metrics.txt (used by "
        )
        for p in problems
    ), problems


def test_the_service_exports_the_contract_metrics_with_their_labels(
    active_service: RunningService,
) -> None:
    text = scrape(active_service.metrics_url)
    names = mon.exposition_names(text)
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    for metric in support.contract_metrics():
        if metric.is_prefix:
            assert any(name.startswith(metric.name) for name in names), metric.name
            continue
        for name in metric.sample_names():
            assert name in names, f"{name} is not exported"
            expected = set(metric.labels) | ({"le"} if name.endswith("_bucket") else set())
            assert labels[name] == expected, name


def test_every_allow_listed_exporter_metric_is_used() -> None:
    used = set(mon.referenced_metrics())
    unused = sorted(mon.allowed_exporter_metrics() - used)
    assert not unused, f"{unused} are allow-listed but no rule or panel uses them"
