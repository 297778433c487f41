"""The one place helm command lines are built, plus the chart's facts (scenarios, rule copies).

Builders return argv lists for ``ops.core.runner.Runner``; nothing here runs a cluster command by
itself. The pinned helm is 4.x (``ops.core.tools``): its ``--rollback-on-failure`` is what helm 3
called ``--atomic`` (helm 4 still accepts ``--atomic`` but warns that it is deprecated), and
``--wait`` takes a strategy (``watcher`` waits for every object to be ready).
"""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ops.core import project

CHART_DIR = project.CHART_DIR
SCENARIO_DIR = CHART_DIR / "ci"
RULES_SOURCE = project.MONITORING_DIR / "prometheus" / "rules"
RULES_COPY = CHART_DIR / "files" / "prometheus-rules"
RELEASE = project.CHART_NAME
DEFAULT_NAMESPACE = project.PROJECT
DEFAULT_TIMEOUT = "10m"


def scenarios() -> dict[str, Path | None]:
    """The chart's values scenarios: ``default`` (values.yaml alone) and every ci/*-values.yaml."""
    found: dict[str, Path | None] = {"default": None}
    for path in sorted(SCENARIO_DIR.glob("*-values.yaml")):
        found[path.name.removesuffix("-values.yaml")] = path
    return found


@dataclass(frozen=True)
class Values:
    """What a rendering or release is given: values files and ``--set`` pairs, in order."""

    files: tuple[Path, ...] = ()
    sets: Mapping[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        argv: list[str] = []
        for path in self.files:
            argv += ["--values", str(path)]
        for key, value in self.sets.items():
            flag = "--set-string" if key.startswith("image.") else "--set"
            argv += [flag, f"{key}={value.replace(',', chr(92) + ',')}"]  # helm splits on ","
        return argv


# Service settings (contract names) -> the chart value that sets each one.
SETTING_VALUES: Mapping[str, str] = {
    project.env("environment"): "config.environment",
    project.env("log", "level"): "config.logLevel",
    project.env("log", "json"): "config.logJson",
    project.env("kafka", "brokers"): "config.kafkaBrokers",
    project.env("otel", "endpoint"): "config.otelEndpoint",
    project.env("server", "shutdown_delay"): "config.shutdownDelaySeconds",
}


def settings_values(settings: Mapping[str, str]) -> Values:
    """``--set`` pairs for service settings, e.g. an environment's
    (ops.deploy.targets.ENVIRONMENTS)."""
    unknown = sorted(set(settings) - set(SETTING_VALUES))
    if unknown:
        from invoke.exceptions import Exit

        raise Exit(
            f"the chart has no value for {', '.join(unknown)}; map it in "
            "ops.k8s.helm.SETTING_VALUES "
            "(and infra/helm/llm-optimizer/values.yaml)",
            code=1,
        )
    return Values(sets={SETTING_VALUES[key]: value for key, value in settings.items()})


def kube_args(context: str, namespace: str) -> list[str]:
    """The cluster-selecting flags every helm command that talks to a cluster gets."""
    argv = ["--namespace", namespace]
    if context:
        argv += ["--kube-context", context]
    return argv


def lint(values: Values, chart: Path = CHART_DIR, *, strict: bool = True) -> list[str]:
    """`helm lint [--strict] CHART` with the given values."""
    return ["helm", "lint", *(["--strict"] if strict else []), str(chart), *values.args()]


def template(
    values: Values,
    chart: Path = CHART_DIR,
    *,
    release: str = RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str = "",
    skip_tests: bool = False,
    api_versions: Iterable[str] = (),
) -> list[str]:
    """`helm template RELEASE CHART` (offline: no cluster is contacted)."""
    argv = ["helm", "template", release, str(chart), "--namespace", namespace, *values.args()]
    if kube_version:
        argv += ["--kube-version", kube_version]
    for api in api_versions:
        argv += ["--api-versions", api]
    if skip_tests:
        argv.append("--skip-tests")
    return argv


def package(destination: Path, chart: Path = CHART_DIR) -> list[str]:
    """`helm package CHART --destination DIR` (version and appVersion come from Chart.yaml)."""
    return ["helm", "package", str(chart), "--destination", str(destination)]


def _rollout_flags(
    values: Values, atomic: bool, wait: bool, timeout: str, create_namespace: bool
) -> list[str]:
    """The flags install and upgrade share: namespace creation, rollback, waiting, values."""
    flags = ["--create-namespace"] if create_namespace else []
    if atomic:
        flags.append("--rollback-on-failure")
    if wait or atomic:
        flags += ["--wait=watcher", "--wait-for-jobs"]
    return [*flags, "--timeout", timeout, *values.args()]


def upgrade_install(
    values: Values,
    *,
    context: str,
    namespace: str,
    release: str = RELEASE,
    chart: Path = CHART_DIR,
    install: bool = True,
    atomic: bool = True,
    wait: bool = True,
    timeout: str = DEFAULT_TIMEOUT,
    create_namespace: bool = False,
) -> list[str]:
    """`helm upgrade [--install]` with rollback on failure and waiting by default."""
    argv = ["helm", "upgrade", release, str(chart), *kube_args(context, namespace)]
    if install:
        argv.append("--install")
    return argv + _rollout_flags(values, atomic, wait, timeout, create_namespace)


def install(
    values: Values,
    *,
    context: str,
    namespace: str,
    release: str = RELEASE,
    chart: Path = CHART_DIR,
    atomic: bool = True,
    wait: bool = True,
    timeout: str = DEFAULT_TIMEOUT,
    create_namespace: bool = True,
) -> list[str]:
    """`helm install` with rollback on failure and waiting by default."""
    argv = ["helm", "install", release, str(chart), *kube_args(context, namespace)]
    return argv + _rollout_flags(values, atomic, wait, timeout, create_namespace)


def uninstall(
    *,
    context: str,
    namespace: str,
    release: str = RELEASE,
    wait: bool = True,
    timeout: str = DEFAULT_TIMEOUT,
) -> list[str]:
    """`helm uninstall RELEASE`, waiting until the objects are gone by default."""
    argv = ["helm", "uninstall", release, *kube_args(context, namespace)]
    if wait:
        argv.append("--wait=watcher")
    return [*argv, "--timeout", timeout]


def rollback(
    *,
    context: str,
    namespace: str,
    revision: int = 0,
    release: str = RELEASE,
    wait: bool = True,
    timeout: str = DEFAULT_TIMEOUT,
) -> list[str]:
    """`helm rollback RELEASE [REVISION]` (0: the previous revision), waiting by default.

    The chart's migrations hook is pre-install/pre-upgrade only: a rollback never runs an older
    version's `db upgrade` against a newer schema (migrations only go forward)."""
    argv = ["helm", "rollback", release]
    if revision:
        argv.append(str(revision))
    argv += kube_args(context, namespace)
    if wait:
        argv += ["--wait=watcher", "--wait-for-jobs"]
    return [*argv, "--timeout", timeout]


def history(*, context: str, namespace: str, release: str = RELEASE) -> list[str]:
    """`helm history RELEASE`: every revision, its chart and what it was (install, upgrade, ...)."""
    return ["helm", "history", release, *kube_args(context, namespace)]


def run_tests(*, context: str, namespace: str, release: str = RELEASE) -> list[str]:
    """`helm test RELEASE --logs`: runs the chart's HTTP and gRPC health pods."""
    return ["helm", "test", release, *kube_args(context, namespace), "--logs"]


def status(*, context: str, namespace: str, release: str = RELEASE) -> list[str]:
    """`helm status RELEASE`."""
    return ["helm", "status", release, *kube_args(context, namespace)]


# --- the PrometheusRule's copy of monitoring/prometheus/rules ------------------------------------


def rules_drift(source: Path = RULES_SOURCE, copy: Path = RULES_COPY) -> list[str]:
    """Differences between the rule files and the chart's copy; empty when they agree."""
    wanted = {p.name: p for p in sorted(source.glob("*.yml"))}
    present = {p.name: p for p in sorted(copy.glob("*.yml"))}
    problems = [f"missing in the chart: {name}" for name in wanted if name not in present]
    problems += [f"not in {source}: {name}" for name in present if name not in wanted]
    problems += [
        f"differs: {name}"
        for name in wanted
        if name in present and not filecmp.cmp(wanted[name], present[name], shallow=False)
    ]
    return problems


def sync_rules(
    source: Path = RULES_SOURCE, copy: Path = RULES_COPY, *, dry_run: bool = False
) -> list[str]:
    """Make the chart's copy equal the rule files; return what changed (or would)."""
    changes = rules_drift(source, copy)
    if dry_run or not changes:
        return changes
    copy.mkdir(parents=True, exist_ok=True)
    for stale in copy.glob("*.yml"):
        if not (source / stale.name).is_file():
            stale.unlink()
    for path in source.glob("*.yml"):
        shutil.copyfile(path, copy / path.name)
    return changes


def helm_home_env(base: Path) -> dict[str, str]:
    """HELM_{CACHE,CONFIG,DATA}_HOME under ``base``: an isolated helm (tests, CI)."""
    return {f"HELM_{kind}_HOME": str(base / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}


def value_files(paths: Sequence[str | Path]) -> tuple[Path, ...]:
    """Values files relative to the repository root become absolute paths."""
    return tuple(p if Path(p).is_absolute() else project.ROOT / p for p in map(Path, paths))
