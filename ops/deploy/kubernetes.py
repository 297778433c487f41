"""``invoke deploy --target kubernetes``: the plain manifests in infra/kubernetes, kubectl apply.

The plain manifests are one rendering of the chart, for production
(infra/kubernetes/values.yaml); a development deployment in a cluster is ``--target helm --env
dev``. ``apply`` checks the committed manifests equal a fresh rendering, checks the cluster and
the operator-created Secrets, then applies in order (namespace, configuration, the migrations
Job waited for, the workload). ``down`` deletes the manifests' objects; the namespace stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project
from ops.core.runner import Runner, runner_for
from ops.deploy.base import Invocation, Target
from ops.deploy.environments import require
from ops.deploy.prerequisites import Prerequisite
from ops.k8s import helm, kube

PREREQUISITES = (Prerequisite("tool", "kubectl"), Prerequisite("kube-context"))
ROLLOUT_TIMEOUT = "300s"  # a restart's new pods: image present, probes passing


def settings(c: Context) -> Mapping[str, Any]:
    """The ``llm_optimizer`` Invoke config (kube_context, namespace, registry, ...)."""
    return dict(c.config.get("llm_optimizer", {}))


@contextmanager
def cluster(
    c: Context, *, context: str = "", namespace: str = "", dry_run: bool, report: bool = True
) -> Iterator[tuple[Runner, kube.Preflight]]:
    """The runner and the checked cluster (context and namespace from the arguments, else the
    config); exits naming the fix when no cluster answers, except in a dry run. A dry run ends
    with what the pre-flight found (unless ``report`` is false: `invoke deploy` reports)."""
    runner = runner_for(c, dry_run=dry_run)
    config = settings(c)
    pre = kube.preflight(
        runner,
        kube.configured_context(config, context),
        kube.configured_namespace(config, namespace),
    )
    kube.require_cluster(pre, runner.dry_run)
    yield runner, pre
    if runner.dry_run and report:
        kube.report_dry_run(pre)


def manifest_namespace() -> str:
    """The namespace the committed manifests create."""
    found = [o for o in kube.objects() if o.get("kind") == "Namespace"]
    if not found:
        raise Exit(
            f"{kube.RENDERED_DIR.relative_to(project.ROOT)} has no manifests; "
            "run: invoke k8s.render",
            code=1,
        )
    return str(found[0]["metadata"]["name"])


def apply_manifests(
    c: Context, *, context: str = "", timeout: str = "10m", dry_run: bool, report: bool = True
) -> None:
    """kubectl apply the plain manifests in order, after checking the cluster and Secrets."""
    namespace = manifest_namespace()
    with cluster(c, context=context, namespace=namespace, dry_run=dry_run, report=report) as (
        runner,
        pre,
    ):
        _apply_manifests(runner, pre, timeout)


def _apply_manifests(runner: Runner, pre: kube.Preflight, timeout: str) -> None:
    namespace = pre.namespace
    missing = [
        secret
        for secret in kube.required_secrets()
        if pre.problem or not kube.secret_exists(runner, pre.context, namespace, secret)
    ]
    if missing and not runner.dry_run:
        raise Exit(
            f"Secret(s) {', '.join(missing)} missing in namespace {namespace}; the manifests "
            f"refer to them (infra/kubernetes/values.yaml). Create them first, e.g. kubectl "
            f"apply --filename {kube.RENDERED_DIR.relative_to(project.ROOT) / kube.STAGES[0][0]} "
            "(the namespace with its PodSecurity labels; `kubectl create namespace` would make "
            f"the first apply warn); kubectl --namespace {namespace} create secret "
            f"generic {missing[0]} --from-file=api-keys=./api-keys "
            "--from-literal=database-url=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB "
            "(see docs/kubernetes.md)",
            code=1,
        )
    for secret in missing:
        print(f"[dry-run] note: Secret {secret} is not in namespace {namespace}; create it first")
    for argv in kube.apply_plan(pre.context, timeout=timeout):
        runner.run(argv)


def delete_manifests(
    c: Context, *, context: str = "", include_namespace: bool = False, dry_run: bool
) -> None:
    """kubectl delete the plain manifests' objects (the namespace too, when asked)."""
    with cluster(c, context=context, namespace=manifest_namespace(), dry_run=dry_run) as (
        runner,
        pre,
    ):
        for argv in kube.delete_plan(pre.context, include_namespace=include_namespace):
            runner.run(argv)


def apply(c: Context, *, env: str, dry_run: bool) -> None:
    """Check the manifests are current, then apply them (production only)."""
    require(env)
    if env != "prod":
        raise Exit(
            "the plain manifests are the production rendering (infra/kubernetes/values.yaml); "
            "use --env prod, or --target helm --env dev for a development deployment",
            code=2,
        )
    drift = kube.manifest_drift(kube.render_manifests(Runner(ctx=c, dry_run=False, echo=False)))
    if drift:
        raise Exit(
            "infra/kubernetes/manifests differs from the chart ("
            + "; ".join(drift)
            + "); run: invoke k8s.render",
            code=1,
        )
    apply_manifests(c, dry_run=dry_run, report=False)  # `invoke deploy` reports what is missing


def release_status(
    c: Context, *, namespace: str, first: Callable[..., list[str]] | None = None
) -> int:
    """The release's objects, then whether its Deployment has rolled out (0), else 3.
    ``first(context=..., namespace=...)`` is a command to show before them (helm status)."""
    runner = Runner(ctx=c, echo=False)
    pre = kube.preflight(runner, kube.configured_context(settings(c)), namespace)
    kube.require_cluster(pre, dry_run=False)
    if first is not None:
        runner.run(first(context=pre.context, namespace=pre.namespace), check=False)
    runner.run(kube.status(pre.context, pre.namespace), check=False)
    result = runner.run(kube.rollout_status(pre.context, pre.namespace), check=False)
    return 0 if result is not None and result.ok else 3


def status(c: Context) -> int:
    """The manifests' objects and rollout: 0 when the service is rolled out and ready."""
    return release_status(c, namespace=manifest_namespace())


def restart_release(c: Context, *, namespace: str) -> None:
    """``kubectl rollout restart`` of the service's Deployment in ``namespace``, then wait until
    the new pods have rolled out (ready) and the old ones are gone."""
    runner = Runner(ctx=c)
    pre = kube.preflight(runner, kube.configured_context(settings(c)), namespace)
    kube.require_cluster(pre, dry_run=False)
    runner.run(
        kube.rollout_restart(pre.context, pre.namespace),
        hint=f"is the service deployed in namespace {pre.namespace}? `invoke deploy.status`",
    )
    runner.run(
        kube.rollout_status(pre.context, pre.namespace, timeout=ROLLOUT_TIMEOUT),
        hint="the new pods did not become ready; `kubectl describe pods` and their logs say why",
    )


def restart(c: Context) -> None:
    """The plain manifests' Deployment restarted in place (see :func:`restart_release`)."""
    restart_release(c, namespace=manifest_namespace())


def down(c: Context, *, dry_run: bool) -> None:
    """Delete the manifests' objects; the namespace (and anything else in it) stays."""
    delete_manifests(c, dry_run=dry_run)


def service_command(
    c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
) -> Invocation:
    """``kubectl exec deploy/llm-optimizer -- llm-optimizer-service ARGS`` in the release's
    namespace (archives stay in the pod's data dir; copy them out with ``kubectl cp``)."""
    config = settings(c)
    return Invocation(
        kube.kubectl(
            kube.configured_context(config),
            kube.configured_namespace(config),
            "exec",
            f"deploy/{helm.RELEASE}",
            "--",
            project.SERVICE_COMMAND,
            *args,
        )
    )


TARGET = Target(
    "kubernetes",
    "plain manifests rendered from the chart (infra/kubernetes), kubectl apply",
    apply=apply,
    status=status,
    down=down,
    service_command=service_command,
    restart=restart,
    prerequisites=PREREQUISITES,
)
