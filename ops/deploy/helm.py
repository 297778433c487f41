"""``invoke deploy --target helm``: the chart (infra/helm/llm-optimizer), helm upgrade --install.

``apply`` lints the chart offline with the environment's values, checks the cluster (and, for
prod, the operator-created Secrets), then ``helm upgrade --install`` (rolls back on failure and
waits), then ``helm test`` (skipped, saying why, on kwok's simulated nodes). dev: one pod on
the embedded defaults; prod: the production values the plain manifests use
(infra/kubernetes/values.yaml: existing Secrets, replicas, policies).
``llm_optimizer.helm.values`` adds the operator's own values files; ``registry``/``image_tag``
pick the image. ``down`` is ``helm uninstall``; the namespace and the operator's Secrets stay.
The ``invoke helm.*`` tasks drive the same functions with their own arguments.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from ops.core.runner import Runner
from ops.deploy import kubernetes
from ops.deploy.base import Invocation, Target
from ops.deploy.environments import require
from ops.deploy.prerequisites import Prerequisite
from ops.k8s import helm, kube

# `invoke deploy --env` -> values files for that environment, on top of the environment's
# service settings (ops.deploy.environments).
ENV_FILES: Mapping[str, tuple[Path, ...]] = {"dev": (), "prod": (kube.VALUES_FILE,)}


def values(c: Context, files: Sequence[str] = (), sets: Sequence[str] = ()) -> helm.Values:
    """The image settings from config, then the given values files and --set pairs."""
    config = kubernetes.settings(c)
    pairs: dict[str, str] = {}
    if config.get("registry"):
        pairs["image.registry"] = str(config["registry"])
    if config.get("image_tag"):
        pairs["image.tag"] = str(config["image_tag"])
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Exit(f"--set '{item}' is not KEY=VALUE; e.g. --set replicaCount=2", code=2)
        pairs[key] = value
    paths = helm.value_files(files)
    for path in paths:
        if not path.is_file():
            raise Exit(f"values file {path} does not exist; pass an existing file", code=2)
    return helm.Values(files=paths, sets=pairs)


def release(
    c: Context,
    values: helm.Values,
    *,
    context: str = "",
    namespace: str = "",
    upgrade: bool = True,
    atomic: bool = True,
    wait: bool = True,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool,
) -> None:
    """helm install (or upgrade --install) after the cluster pre-flight, then helm status."""
    command = helm.upgrade_install if upgrade else helm.install
    with kubernetes.cluster(c, context=context, namespace=namespace, dry_run=dry_run) as (
        runner,
        pre,
    ):
        runner.run(
            command(
                values,
                context=pre.context,
                namespace=pre.namespace,
                atomic=atomic,
                wait=wait,
                timeout=timeout,
                create_namespace=not pre.namespace_exists,
            )
        )
        if not runner.dry_run:
            runner.run(helm.status(context=pre.context, namespace=pre.namespace))


def uninstall(
    c: Context,
    *,
    context: str = "",
    namespace: str = "",
    wait: bool = True,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool,
) -> None:
    """helm uninstall the release (waits until its objects are gone, by default)."""
    with kubernetes.cluster(c, context=context, namespace=namespace, dry_run=dry_run) as (
        runner,
        pre,
    ):
        runner.run(
            helm.uninstall(context=pre.context, namespace=pre.namespace, wait=wait, timeout=timeout)
        )


def apply(c: Context, *, env: str, dry_run: bool) -> None:
    """Lint, then helm upgrade --install for ``env`` (dev|prod), then helm test."""
    environment = require(env, ENV_FILES, code=2)
    base = helm.settings_values(environment.service_settings)
    helm_config: Any = kubernetes.settings(c).get("helm") or {}
    extra = values(c, [str(v) for v in helm_config.get("values") or []])
    merged = helm.Values(files=(*ENV_FILES[env], *extra.files), sets={**base.sets, **extra.sets})
    with kubernetes.cluster(c, dry_run=dry_run, report=False) as (runner, pre):
        _upgrade(runner, pre, merged, prod=env == "prod")


def _upgrade(runner: Runner, pre: kube.Preflight, merged: helm.Values, *, prod: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        # Offline first: a chart that does not render never reaches the cluster.
        runner.run(helm.lint(merged), env=helm.helm_home_env(Path(scratch)))
    if prod and not pre.problem:
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
            merged,
            context=pre.context,
            namespace=pre.namespace,
            create_namespace=not pre.namespace_exists,
        )
    )
    if not runner.dry_run:
        run_tests(runner, pre)


SIMULATED = (
    "every node of this cluster is simulated by kwok (`invoke cluster.up`): no container runs, "
    "so a test pod could never check the service"
)


def run_tests(runner: Runner, pre: kube.Preflight, *, required: bool = False) -> None:
    """``helm test``, except on simulated nodes: there it is skipped with the reason (or, when
    ``required``, refused), never left to time out or to "pass" without a container."""
    if not runner.dry_run and kube.simulated_cluster(runner, pre.context):
        if required:
            raise Exit(f"helm test cannot run here: {SIMULATED}", code=1)
        print(f"helm test skipped: {SIMULATED}")
        return
    runner.run(helm.run_tests(context=pre.context, namespace=pre.namespace))


def rollback(
    c: Context,
    *,
    revision: int = 0,
    context: str = "",
    namespace: str = "",
    wait: bool = True,
    timeout: str = helm.DEFAULT_TIMEOUT,
    dry_run: bool,
) -> None:
    """helm rollback to ``revision`` (0: the previous one), then the release's history."""
    if revision < 0:
        raise Exit(
            f"--revision {revision} is not a revision; pass one `helm history` lists, "
            "or 0 for the previous one",
            code=2,
        )
    with kubernetes.cluster(c, context=context, namespace=namespace, dry_run=dry_run) as (
        runner,
        pre,
    ):
        runner.run(
            helm.rollback(
                context=pre.context,
                namespace=pre.namespace,
                revision=revision,
                wait=wait,
                timeout=timeout,
            )
        )
        if not runner.dry_run:
            runner.run(helm.history(context=pre.context, namespace=pre.namespace))


def status(c: Context) -> int:
    """helm status, the release's objects and its rollout: 0 when rolled out and ready."""
    namespace = kube.configured_namespace(kubernetes.settings(c))
    return kubernetes.release_status(c, namespace=namespace, first=helm.status)


def restart(c: Context) -> None:
    """The release's Deployment restarted in place, as for the plain manifests."""
    kubernetes.restart_release(c, namespace=kube.configured_namespace(kubernetes.settings(c)))


def down(c: Context, *, dry_run: bool) -> None:
    """helm uninstall the release."""
    uninstall(c, dry_run=dry_run)


def service_command(
    c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
) -> Invocation:
    """As for the plain manifests: kubectl exec in the release's Deployment."""
    return kubernetes.service_command(c, args, mounts=mounts, running=running)


TARGET = Target(
    "helm",
    "the Helm chart (infra/helm/llm-optimizer), helm upgrade --install",
    apply=apply,
    status=status,
    down=down,
    service_command=service_command,
    restart=restart,
    prerequisites=(Prerequisite("tool", "helm"), *kubernetes.PREREQUISITES),
)
