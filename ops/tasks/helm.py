"""Invoke collection: helm — lint, template, package, install, upgrade, rollback, uninstall, test.

Commands are built by ``ops.k8s.helm`` and run through ``ops.core.runner``.
Every task that talks to a
cluster first checks the kube context and namespace (``ops.k8s.kube.preflight``) and says clearly
when no cluster is configured; ``--dry-run`` prints the full commands. Installs and upgrades
roll back on failure and wait by default (helm 4's ``--rollback-on-failure --wait=watcher``,
which helm 3 called ``--atomic --wait``).

Releases go through ``ops.deploy.helm`` (also ``invoke deploy --target helm``).
Configuration (invoke.yaml): ``llm_optimizer.kube_context``, ``llm_optimizer.namespace``,
``llm_optimizer.registry``, ``llm_optimizer.image_tag``, ``llm_optimizer.helm.values`` (extra
values files for installs).
"""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ops.core import project
from ops.core.runner import runner_for
from ops.deploy import helm as helm_target
from ops.deploy import kubernetes
from ops.k8s import helm, kube

DRY_RUN = "print the full commands (after checking the cluster) and change nothing"
CONTEXT = "kube context (default: llm_optimizer.kube_context, else kubectl's current context)"
NAMESPACE = "namespace (default: llm_optimizer.namespace, else llm-optimizer)"
VALUES = "extra values file (repeatable), after the chart's values.yaml"
SET = "KEY=VALUE for --set (repeatable); never put secrets here, use existingSecret values"
NO_ATOMIC = "do not roll back on failure (helm 4 --rollback-on-failure, helm 3 --atomic)"
NO_WAIT = "do not wait for the objects to be ready"
TIMEOUT = "how long helm waits, e.g. 10m"


def _namespace(c: Context, namespace: str) -> str:
    return kube.configured_namespace(kubernetes.settings(c), namespace)


def _values(c: Context, values: list[str] | None, sets: list[str] | None) -> helm.Values:
    return helm_target.values(c, values or (), sets or ())


@task(
    iterable=["values"],
    help={"values": VALUES, "all_scenarios": "lint the defaults and every ci/*-values.yaml"},
)
def lint(c: Context, values: list[str] | None = None, all_scenarios: bool = True) -> None:
    """helm lint --strict the chart and render it (default: its values and every ci/ scenario).

    helm 4's lint reports a template's `fail` only as an INFO line, so each scenario is also
    rendered with helm template, which does fail on it.
    """
    runner = runner_for(c)
    runs = [helm.Values(files=helm.value_files(values or []))]
    if all_scenarios and not values:
        runs = [helm.Values(files=(p,) if p else ()) for p in helm.scenarios().values()]
    for run in runs:
        runner.run(helm.lint(run))
        runner.run(helm.template(run), capture=True)


@task(
    iterable=["values", "set_"],
    help={
        "values": VALUES,
        "set_": SET,
        "namespace": NAMESPACE,
        "output": "write the manifests to this file instead of stdout",
        "kube_version": "Kubernetes version for .Capabilities, e.g. 1.29.0",
    },
)
def template(
    c: Context,
    values: list[str] | None = None,
    set_: list[str] | None = None,
    namespace: str = "",
    output: str = "",
    kube_version: str = "",
) -> None:
    """Render the chart offline (helm template) to stdout or a file."""
    runner = runner_for(c)
    argv = helm.template(
        _values(c, values, set_), namespace=_namespace(c, namespace), kube_version=kube_version
    )
    if runner.dry_run or not output:
        runner.run(argv)
        return
    Path(output).write_text(runner.output(argv) + "\n")
    print(f"wrote {output}")


@task(help={"destination": "directory for the .tgz (default: dist/)"})
def package(c: Context, destination: str = "dist") -> None:
    """helm package the chart; its version and appVersion are the repository version."""
    target = Path(destination)
    runner = runner_for(c)
    if not runner.dry_run:
        target.mkdir(parents=True, exist_ok=True)
    runner.run(helm.package(target))


@task(help={"dry_run": "list what would change and change nothing"})
def sync_rules(c: Context, dry_run: bool = False) -> None:
    """Copy monitoring/prometheus/rules/*.yml into the chart (the PrometheusRule's source)."""
    changes = helm.sync_rules(dry_run=dry_run or runner_for(c).dry_run)
    for change in changes:
        print(f"{'would sync' if dry_run else 'synced'}: {change}")
    if not changes:
        print(f"{helm.RULES_COPY.relative_to(project.ROOT)} equals {helm.RULES_SOURCE.name}/")


RELEASE_HELP = {
    "values": VALUES,
    "set_": SET,
    "context": CONTEXT,
    "namespace": NAMESPACE,
    "no_atomic": NO_ATOMIC,
    "no_wait": NO_WAIT,
    "timeout": TIMEOUT,
    "dry_run": DRY_RUN,
}


@task(iterable=["values", "set_"], help=RELEASE_HELP)
def install(
    c: Context,
    values: list[str] | None = None,
    set_: list[str] | None = None,
    context: str = "",
    namespace: str = "",
    no_atomic: bool = False,
    no_wait: bool = False,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool = False,
) -> None:
    """helm install the chart (rolls back on failure and waits, by default)."""
    helm_target.release(
        c,
        _values(c, values, set_),
        context=context,
        namespace=namespace,
        upgrade=False,
        atomic=not no_atomic,
        wait=not no_wait,
        timeout=timeout,
        dry_run=dry_run,
    )


@task(iterable=["values", "set_"], help=RELEASE_HELP)
def upgrade(
    c: Context,
    values: list[str] | None = None,
    set_: list[str] | None = None,
    context: str = "",
    namespace: str = "",
    no_atomic: bool = False,
    no_wait: bool = False,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool = False,
) -> None:
    """helm upgrade --install the chart (migrations Job first; rolls back on failure)."""
    helm_target.release(
        c,
        _values(c, values, set_),
        context=context,
        namespace=namespace,
        upgrade=True,
        atomic=not no_atomic,
        wait=not no_wait,
        timeout=timeout,
        dry_run=dry_run,
    )


@task(
    help={
        "context": CONTEXT,
        "namespace": NAMESPACE,
        "no_wait": NO_WAIT,
        "timeout": TIMEOUT,
        "dry_run": DRY_RUN,
    }
)
def uninstall(
    c: Context,
    context: str = "",
    namespace: str = "",
    no_wait: bool = False,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool = False,
) -> None:
    """helm uninstall the release (waits until its objects are gone, by default)."""
    helm_target.uninstall(
        c, context=context, namespace=namespace, wait=not no_wait, timeout=timeout, dry_run=dry_run
    )


@task(name="test", help={"context": CONTEXT, "namespace": NAMESPACE, "dry_run": DRY_RUN})
def release_test(c: Context, context: str = "", namespace: str = "", dry_run: bool = False) -> None:
    """helm test the release: HTTP /health/live and /health/ready, and gRPC health."""
    with kubernetes.cluster(c, context=context, namespace=namespace, dry_run=dry_run) as (
        runner,
        pre,
    ):
        helm_target.run_tests(runner, pre, required=True)


@task(
    help={
        "revision": "revision to return to (default 0: the previous one; see helm history)",
        "context": CONTEXT,
        "namespace": NAMESPACE,
        "no_wait": NO_WAIT,
        "timeout": TIMEOUT,
        "dry_run": DRY_RUN,
    }
)
def rollback(
    c: Context,
    revision: int = 0,
    context: str = "",
    namespace: str = "",
    no_wait: bool = False,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool = False,
) -> None:
    """helm rollback the release (waits for the rollout) and show its history.

    Migrations are not undone: the schema stays at the newer version (the hook Job runs on
    install and upgrade only)."""
    helm_target.rollback(
        c,
        revision=revision,
        context=context,
        namespace=namespace,
        wait=not no_wait,
        timeout=timeout,
        dry_run=dry_run,
    )
