"""Invoke collection: k8s — the plain manifests in infra/kubernetes, rendered from the chart.

``render`` regenerates infra/kubernetes/manifests/ from the chart and infra/kubernetes/values.yaml
(offline); ``apply``/``delete`` run them through kubectl in order (namespace, configuration,
migrations Job waited for, workload); ``status``/``logs`` work for Helm releases too. Every task
that talks to a cluster checks the kube context and namespace first and says clearly when no
cluster is configured; ``--dry-run`` prints the full commands. The work is ``ops.deploy.kubernetes``
(also ``invoke deploy --target kubernetes``) and ``ops.k8s.kube``.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core import project
from ops.core.runner import Runner, runner_for
from ops.deploy import kubernetes
from ops.k8s import kube

DRY_RUN = "print the full commands (after checking the cluster) and change nothing"
CONTEXT = "kube context (default: llm_optimizer.kube_context, else kubectl's current context)"
NAMESPACE = "namespace (default: llm_optimizer.namespace, else llm-optimizer)"
TIMEOUT = "how long to wait for the migrations Job and the rollout, e.g. 10m"


@task(help={"check": "only compare with the committed files; exit 1 when they differ"})
def render(c: Context, check: bool = False) -> None:
    """Render infra/kubernetes/manifests/ from the chart with infra/kubernetes/values.yaml."""
    runner = runner_for(c)
    files = kube.render_manifests(Runner(ctx=c, dry_run=False, echo=runner.echo))
    where = kube.RENDERED_DIR.relative_to(project.ROOT)
    if check or runner.dry_run:
        drift = kube.manifest_drift(files)
        for problem in drift:
            print(f"{where}: {problem}")
        if drift and check:
            raise Exit(f"{where} differs from the chart's rendering; run: invoke k8s.render", 1)
        if not drift:
            print(f"{where} is up to date")
        return
    changed = kube.write_manifests(files)
    for path in changed:
        print(f"rendered {path.relative_to(project.ROOT)}")
    if not changed:
        print(f"{where} is up to date")


@task(help={"context": CONTEXT, "timeout": TIMEOUT, "dry_run": DRY_RUN})
def apply(c: Context, context: str = "", timeout: str = "10m", dry_run: bool = False) -> None:
    """kubectl apply the plain manifests in order; migrations complete before the workload."""
    kubernetes.apply_manifests(c, context=context, timeout=timeout, dry_run=dry_run)


@task(
    help={
        "context": CONTEXT,
        "include_namespace": "also delete the namespace (and everything else in it)",
        "dry_run": DRY_RUN,
    }
)
def delete(
    c: Context, context: str = "", include_namespace: bool = False, dry_run: bool = False
) -> None:
    """kubectl delete the plain manifests' objects (the namespace stays unless asked)."""
    kubernetes.delete_manifests(
        c, context=context, include_namespace=include_namespace, dry_run=dry_run
    )


@task(help={"context": CONTEXT, "namespace": NAMESPACE, "dry_run": DRY_RUN})
def status(c: Context, context: str = "", namespace: str = "", dry_run: bool = False) -> None:
    """Show the release's objects (plain manifests or Helm: the same labels)."""
    with kubernetes.cluster(c, context=context, namespace=namespace, dry_run=dry_run) as (
        runner,
        pre,
    ):
        runner.run(kube.status(pre.context, pre.namespace))


@task(
    help={
        "context": CONTEXT,
        "namespace": NAMESPACE,
        "follow": "keep streaming",
        "tail": "lines per container to show first",
        "dry_run": DRY_RUN,
    }
)
def logs(
    c: Context,
    context: str = "",
    namespace: str = "",
    follow: bool = False,
    tail: int = 200,
    dry_run: bool = False,
) -> None:
    """Logs of the service's pods, every container (the migrations init container too)."""
    with kubernetes.cluster(c, context=context, namespace=namespace, dry_run=dry_run) as (
        runner,
        pre,
    ):
        runner.run(kube.logs(pre.context, pre.namespace, follow=follow, tail=tail))
