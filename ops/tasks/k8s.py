"""Invoke collection: k8s — the plain manifests in infra/kubernetes, rendered from the chart.

``render`` regenerates infra/kubernetes/manifests/ from the chart and infra/kubernetes/values.yaml
(offline); ``apply``/``delete`` run them through kubectl in order (namespace, configuration,
migrations Job waited for, workload); ``status``/``logs`` work for Helm releases too. Every task
that talks to a cluster checks the kube context and namespace first and says clearly when no
cluster is configured; ``--dry-run`` prints the full commands.

``invoke deploy --target kubernetes`` calls ``deploy_target(c, env=..., dry_run=...)`` below.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core import project
from ops.core.runner import Runner, runner_for
from ops.k8s import helm, kube

DRY_RUN = "print the full commands (after checking the cluster) and change nothing"
CONTEXT = "kube context (default: llm_optimizer.kube_context, else kubectl's current context)"
NAMESPACE = "namespace (default: llm_optimizer.namespace, else llm-optimizer)"
TIMEOUT = "how long to wait for the migrations Job and the rollout, e.g. 10m"


def _context(c: Context, context: str) -> str:
    return context or str(dict(c.config.get("llm_optimizer", {})).get("kube_context", "") or "")


def _namespace(c: Context, namespace: str) -> str:
    configured = dict(c.config.get("llm_optimizer", {})).get("namespace", "")
    return namespace or str(configured or helm.DEFAULT_NAMESPACE)


def _manifest_namespace() -> str:
    found = [o for o in kube.objects() if o.get("kind") == "Namespace"]
    if not found:
        raise Exit(
            f"{kube.RENDERED_DIR.relative_to(project.ROOT)} has no manifests; "
            "run: invoke k8s.render",
            code=1,
        )
    return str(found[0]["metadata"]["name"])


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


def _apply(c: Context, context: str, timeout: str, dry_run: bool, *, report: bool = True) -> None:
    runner = runner_for(c, dry_run=dry_run)
    namespace = _manifest_namespace()
    pre = kube.preflight(runner, _context(c, context), namespace)
    kube.require_cluster(pre, runner.dry_run)
    missing = [
        secret
        for secret in kube.required_secrets()
        if pre.problem or not kube.secret_exists(runner, pre.context, namespace, secret)
    ]
    if missing and not runner.dry_run:
        raise Exit(
            f"Secret(s) {', '.join(missing)} missing in namespace {namespace}; the manifests "
            f"refer to them (infra/kubernetes/values.yaml). Create them first, e.g. kubectl "
            f"create namespace {namespace}; kubectl --namespace {namespace} create secret "
            f"generic {missing[0]} --from-file=api-keys=./api-keys "
            "--from-literal=database-url=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB "
            "(see docs/kubernetes.md)",
            code=1,
        )
    for secret in missing:
        print(f"[dry-run] note: Secret {secret} is not in namespace {namespace}; create it first")
    for argv in kube.apply_plan(pre.context, timeout=timeout):
        runner.run(argv)
    if runner.dry_run and report:
        kube.report_dry_run(pre)


@task(help={"context": CONTEXT, "timeout": TIMEOUT, "dry_run": DRY_RUN})
def apply(c: Context, context: str = "", timeout: str = "10m", dry_run: bool = False) -> None:
    """kubectl apply the plain manifests in order; migrations complete before the workload."""
    _apply(c, context, timeout, dry_run)


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
    runner = runner_for(c, dry_run=dry_run)
    pre = kube.preflight(runner, _context(c, context), _manifest_namespace())
    kube.require_cluster(pre, runner.dry_run)
    for argv in kube.delete_plan(pre.context, include_namespace=include_namespace):
        runner.run(argv)
    if runner.dry_run:
        kube.report_dry_run(pre)


@task(help={"context": CONTEXT, "namespace": NAMESPACE, "dry_run": DRY_RUN})
def status(c: Context, context: str = "", namespace: str = "", dry_run: bool = False) -> None:
    """Show the release's objects (plain manifests or Helm: the same labels)."""
    runner = runner_for(c, dry_run=dry_run)
    pre = kube.preflight(runner, _context(c, context), _namespace(c, namespace))
    kube.require_cluster(pre, runner.dry_run)
    runner.run(kube.status(pre.context, pre.namespace))
    if runner.dry_run:
        kube.report_dry_run(pre)


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
    runner = runner_for(c, dry_run=dry_run)
    pre = kube.preflight(runner, _context(c, context), _namespace(c, namespace))
    kube.require_cluster(pre, runner.dry_run)
    runner.run(kube.logs(pre.context, pre.namespace, follow=follow, tail=tail))
    if runner.dry_run:
        kube.report_dry_run(pre)


def deploy_target(c: Context, *, env: str, dry_run: bool) -> None:
    """`invoke deploy --target kubernetes`: check the manifests are current, then apply them.

    The plain manifests are one rendering, for production (infra/kubernetes/values.yaml);
    a development deployment in a cluster is `invoke deploy --target helm --env dev`.
    """
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
    _apply(c, "", "10m", dry_run, report=False)  # `invoke deploy` reports what is missing
