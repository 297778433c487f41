"""Invoke collection: helm — lint, template, package, install, upgrade, uninstall, test, ...

Commands are built by ``ops.k8s.helm`` and run through ``ops.core.runner``.
Every task that talks to a
cluster first checks the kube context and namespace (``ops.k8s.kube.preflight``) and says clearly
when no cluster is configured; ``--dry-run`` prints the full commands. Installs and upgrades
roll back on failure and wait by default (helm 4's ``--rollback-on-failure --wait=watcher``,
which helm 3 called ``--atomic --wait``).

``invoke deploy --target helm`` calls ``deploy_target(c, env=..., dry_run=...)`` below.
Configuration (invoke.yaml): ``llm_optimizer.kube_context``, ``llm_optimizer.namespace``,
``llm_optimizer.registry``, ``llm_optimizer.image_tag``, ``llm_optimizer.helm.values`` (extra
values files for installs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core import project
from ops.core.runner import runner_for
from ops.k8s import helm, kube

DRY_RUN = "print the full commands (after checking the cluster) and change nothing"
CONTEXT = "kube context (default: llm_optimizer.kube_context, else kubectl's current context)"
NAMESPACE = "namespace (default: llm_optimizer.namespace, else llm-optimizer)"
VALUES = "extra values file (repeatable), after the chart's values.yaml"
SET = "KEY=VALUE for --set (repeatable); never put secrets here, use existingSecret values"
NO_ATOMIC = "do not roll back on failure (helm 4 --rollback-on-failure, helm 3 --atomic)"
NO_WAIT = "do not wait for the objects to be ready"
TIMEOUT = "how long helm waits, e.g. 10m"

# `invoke deploy --env` -> values files for that environment, on top of the environment's
# service settings (ops.deploy.targets.ENVIRONMENTS). dev: one pod on the embedded defaults;
# prod: the
# production values the plain manifests use (existing Secrets, replicas, policies).
ENV_FILES: dict[str, tuple[Path, ...]] = {"dev": (), "prod": (kube.VALUES_FILE,)}


def _settings(c: Context) -> dict[str, object]:
    return dict(c.config.get("llm_optimizer", {}))


def _context(c: Context, context: str) -> str:
    return context or str(_settings(c).get("kube_context", "") or "")


def _namespace(c: Context, namespace: str) -> str:
    return namespace or str(_settings(c).get("namespace", "") or helm.DEFAULT_NAMESPACE)


def _values(c: Context, values: list[str] | None, sets: list[str] | None) -> helm.Values:
    """The image settings from config, then the given values files and --set pairs."""
    settings = _settings(c)
    pairs: dict[str, str] = {}
    if settings.get("registry"):
        pairs["image.registry"] = str(settings["registry"])
    if settings.get("image_tag"):
        pairs["image.tag"] = str(settings["image_tag"])
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Exit(f"--set '{item}' is not KEY=VALUE; e.g. --set replicaCount=2", code=2)
        pairs[key] = value
    files = helm.value_files(values or [])
    for path in files:
        if not path.is_file():
            raise Exit(f"values file {path} does not exist; pass an existing file", code=2)
    return helm.Values(files=files, sets=pairs)


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


def _release(
    c: Context,
    *,
    context: str,
    namespace: str,
    values: helm.Values,
    upgrade: bool,
    atomic: bool,
    wait: bool,
    timeout: str,
    dry_run: bool,
) -> None:
    runner = runner_for(c, dry_run=dry_run)
    pre = kube.preflight(runner, _context(c, context), _namespace(c, namespace))
    kube.require_cluster(pre, runner.dry_run)
    if upgrade:
        argv = helm.upgrade_install(
            values,
            context=pre.context,
            namespace=pre.namespace,
            atomic=atomic,
            wait=wait,
            timeout=timeout,
            create_namespace=not pre.namespace_exists,
        )
    else:
        argv = helm.install(
            values,
            context=pre.context,
            namespace=pre.namespace,
            atomic=atomic,
            wait=wait,
            timeout=timeout,
            create_namespace=not pre.namespace_exists,
        )
    runner.run(argv)
    if runner.dry_run:
        kube.report_dry_run(pre)
        return
    runner.run(helm.status(context=pre.context, namespace=pre.namespace))


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
    _release(
        c,
        context=context,
        namespace=namespace,
        values=_values(c, values, set_),
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
    _release(
        c,
        context=context,
        namespace=namespace,
        values=_values(c, values, set_),
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
    runner = runner_for(c, dry_run=dry_run)
    pre = kube.preflight(runner, _context(c, context), _namespace(c, namespace))
    kube.require_cluster(pre, runner.dry_run)
    runner.run(
        helm.uninstall(
            context=pre.context, namespace=pre.namespace, wait=not no_wait, timeout=timeout
        )
    )
    if runner.dry_run:
        kube.report_dry_run(pre)


@task(name="test", help={"context": CONTEXT, "namespace": NAMESPACE, "dry_run": DRY_RUN})
def release_test(c: Context, context: str = "", namespace: str = "", dry_run: bool = False) -> None:
    """helm test the release: HTTP /health/live and /health/ready, and gRPC health."""
    runner = runner_for(c, dry_run=dry_run)
    pre = kube.preflight(runner, _context(c, context), _namespace(c, namespace))
    kube.require_cluster(pre, runner.dry_run)
    runner.run(helm.run_tests(context=pre.context, namespace=pre.namespace))
    if runner.dry_run:
        kube.report_dry_run(pre)


def deploy_target(c: Context, *, env: str, dry_run: bool) -> None:
    """`invoke deploy --target helm`: lint, then helm upgrade --install for ``env`` (dev|prod).

    prod uses infra/kubernetes/values.yaml, whose existing Secrets must be created first (the
    pre-flight checks them); llm_optimizer.helm.values adds the operator's own values files.
    """
    from ops.deploy.targets import ENVIRONMENTS

    if env not in ENV_FILES or env not in ENVIRONMENTS:
        raise Exit(f"unknown environment '{env}'; choose one of: {', '.join(ENV_FILES)}", code=2)
    runner = runner_for(c, dry_run=dry_run)
    base = helm.settings_values(ENVIRONMENTS[env].service_settings)
    base = helm.Values(files=ENV_FILES[env], sets=base.sets)
    helm_config: Any = _settings(c).get("helm") or {}
    extra = _values(c, [str(v) for v in helm_config.get("values") or []], [])
    values = helm.Values(files=(*base.files, *extra.files), sets={**base.sets, **extra.sets})
    pre = kube.preflight(runner, _context(c, ""), _namespace(c, ""))
    kube.require_cluster(pre, runner.dry_run)
    with tempfile.TemporaryDirectory() as scratch:
        # Offline first: a chart that does not render never reaches the cluster.
        runner.run(helm.lint(values), env=helm.helm_home_env(Path(scratch)))
    if env == "prod" and not pre.problem:
        for secret in kube.required_secrets():
            if not kube.secret_exists(runner, pre.context, pre.namespace, secret):
                raise Exit(
                    f"Secret '{secret}' is missing in namespace {pre.namespace}; create it first "
                    "(keys api-keys and database-url, see docs/kubernetes.md), e.g. kubectl "
                    f"--namespace {pre.namespace} create secret generic {secret} "
                    "--from-file=api-keys=./api-keys --from-literal=database-url=...",
                    code=1,
                )
    runner.run(
        helm.upgrade_install(
            values,
            context=pre.context,
            namespace=pre.namespace,
            create_namespace=not pre.namespace_exists,
        )
    )
    if not runner.dry_run:
        runner.run(helm.run_tests(context=pre.context, namespace=pre.namespace))
