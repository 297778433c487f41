"""The one place kubectl command lines are built; cluster pre-flight; the plain manifests.

``infra/kubernetes/manifests/`` is rendered from the chart with ``infra/kubernetes/values.yaml``
(``render_manifests``; ``invoke k8s.render``) and split into files applied in order: the
namespace, then configuration, then the migrations Job (waited for), then the workload.
Nothing here is maintained by hand beside the chart; a test fails when the committed files
differ from a fresh rendering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from invoke.exceptions import Exit

from ops.core import project
from ops.core.runner import Runner
from ops.k8s import helm
from ops.k8s.cluster import NODE_ANNOTATION

MANIFEST_DIR = project.INFRA_DIR / "kubernetes"
VALUES_FILE = MANIFEST_DIR / "values.yaml"
RENDERED_DIR = MANIFEST_DIR / "manifests"
NAMESPACE = project.PROJECT
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
HEADER = (
    "# Rendered by `invoke k8s.render` from infra/helm/llm-optimizer with\n"
    "# infra/kubernetes/values.yaml and --set migrations.hook=false (kubectl has no hooks).\n"
    "# Do not edit: change the chart or the values and re-render\n"
    "# (tests/infra/helm fails when this file differs from a fresh rendering).\n"
)
# What only the plain manifests set: kubectl has no hooks, so the migrations Job is a plain Job
# that `apply_plan` waits for. The values file itself is the production shape that
# `invoke deploy --target helm --env prod` installs too, where the Job must stay a pre-install/
# pre-upgrade hook (else helm creates it beside the Deployment and pods start before migrations).
PLAIN_SETS: Mapping[str, str] = {"migrations.hook": "false"}

# Files of the plain manifests, in the order they are applied, and which kinds go where.
CONFIG_KINDS = frozenset({"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret"})
STAGES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("00-namespace.yaml", lambda kind: kind == "Namespace"),
    ("10-config.yaml", lambda kind: kind in CONFIG_KINDS),
    ("20-migrations.yaml", lambda kind: kind == "Job"),
    ("30-workload.yaml", lambda kind: True),
)


def kubectl(context: str, namespace: str, *args: str) -> list[str]:
    """`kubectl [--context C] --namespace N ARGS...`."""
    argv = ["kubectl"]
    if context:
        argv += ["--context", context]
    return [*argv, "--namespace", namespace, *args]


# --- pre-flight: which cluster, which namespace ------------------------------------------------


@dataclass(frozen=True)
class Preflight:
    """The outcome of checking the kube context and namespace before a cluster command."""

    context: str  # the context that will be used ("" when none could be found)
    namespace: str
    namespace_exists: bool
    problem: str | None  # why no cluster command can run, with what to do; None when fine


def check_namespace_name(namespace: str) -> str:
    """Return ``namespace`` when it is a valid DNS label, else raise Exit naming the rule."""
    if not DNS_LABEL.match(namespace):
        raise Exit(
            f"'{namespace}' is not a valid namespace name (lowercase letters, digits and '-', "
            "at most 63, starting and ending alphanumeric); pass e.g. --namespace llm-optimizer",
            code=2,
        )
    return namespace


def _query(runner: Runner, argv: list[str]) -> tuple[int, str, str]:
    quiet = Runner(ctx=runner.ctx, dry_run=False, echo=False)
    result = quiet.run(argv, check=False, capture=True)
    assert result is not None
    return result.exited, result.stdout.strip(), result.stderr.strip()


def preflight(runner: Runner, context: str, namespace: str) -> Preflight:
    """Check that a kube context is configured and its cluster answers, and the namespace.

    Read-only queries run even in dry-run mode, so a dry run says whether the real run could go.
    """
    check_namespace_name(namespace)
    code, contexts, _ = _query(runner, ["kubectl", "config", "get-contexts", "--output=name"])
    known = contexts.split() if code == 0 else []
    if context and context not in known:
        listed = ", ".join(known) or "none"
        return Preflight(
            context,
            namespace,
            False,
            f"kube context '{context}' is not in your kubeconfig (contexts: {listed}); "
            "pick one with --context NAME or set llm_optimizer.kube_context in invoke.yaml",
        )
    if not context:
        code, current, _ = _query(runner, ["kubectl", "config", "current-context"])
        if code != 0 or not current:
            return Preflight(
                "",
                namespace,
                False,
                "no Kubernetes cluster is configured: kubectl has no current context. Point "
                "KUBECONFIG at a cluster's kubeconfig and run `kubectl config use-context NAME` "
                "(or pass --context NAME)",
            )
        context = current
    code, _, err = _query(
        runner, kubectl(context, namespace, "get", "namespace", namespace, "--output=name")
    )
    if code == 0:
        return Preflight(context, namespace, True, None)
    if "NotFound" in err or "not found" in err:
        return Preflight(context, namespace, False, None)
    return Preflight(
        context,
        namespace,
        False,
        f"the cluster of kube context '{context}' did not answer ({err or f'exit {code}'}); "
        "check that it is running and that your credentials are valid",
    )


def require_cluster(pre: Preflight, dry_run: bool) -> None:
    """Stop before any cluster command when the pre-flight found a problem (not in dry runs)."""
    if pre.problem and not dry_run:
        raise Exit(pre.problem, code=1)


def report_dry_run(pre: Preflight) -> None:
    """After a dry run's commands are shown, fail when they could not run for real."""
    if pre.problem:
        raise Exit(f"dry run shown above, but it could not run here: {pre.problem}", code=1)


# --- the plain manifests --------------------------------------------------------------------------


def namespace_manifest(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The Namespace object, enforcing the `restricted` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {
                "app.kubernetes.io/part-of": project.PROJECT,
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def split_documents(rendered: str) -> list[str]:
    """Split a multi-document YAML stream into its non-empty documents (text kept as is)."""
    docs: list[str] = []
    current: list[str] = []
    for line in rendered.splitlines(keepends=True):
        if line.rstrip() == "---":
            docs.append("".join(current))
            current = []
        else:
            current.append(line)
    docs.append("".join(current))
    return [doc for doc in docs if yaml.safe_load(doc)]


def render_manifests(runner: Runner, values: Path = VALUES_FILE) -> dict[str, str]:
    """Render the plain manifests: file name -> contents (helm template, offline)."""
    rendered = runner.output(
        helm.template(
            helm.Values(files=(values,), sets=PLAIN_SETS), namespace=NAMESPACE, skip_tests=True
        )
    )
    files: dict[str, list[str]] = {name: [] for name, _ in STAGES}
    files["00-namespace.yaml"].append(yaml.safe_dump(namespace_manifest(), sort_keys=False))
    for doc in split_documents(rendered):
        kind = str(yaml.safe_load(doc)["kind"])
        for name, wanted in STAGES:
            if wanted(kind):
                files[name].append(doc if doc.endswith("\n") else doc + "\n")
                break
    return {
        name: HEADER + "".join(f"---\n{doc}" for doc in docs)
        for name, docs in files.items()
        if docs
    }


def write_manifests(files: Mapping[str, str], directory: Path = RENDERED_DIR) -> list[Path]:
    """Replace the rendered files in ``directory``; return the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for stale in directory.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
            changed.append(stale)
    for name, text in files.items():
        path = directory / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def manifest_drift(files: Mapping[str, str], directory: Path = RENDERED_DIR) -> list[str]:
    """How the committed manifests differ from ``files``; empty when they are equal."""
    present = {p.name for p in directory.glob("*.yaml")}
    problems = [f"missing: {name}" for name in files if name not in present]
    problems += [f"not rendered any more: {name}" for name in sorted(present - set(files))]
    problems += [
        f"differs: {name}"
        for name, text in files.items()
        if name in present and (directory / name).read_text() != text
    ]
    return problems


def objects(directory: Path = RENDERED_DIR) -> list[dict[str, Any]]:
    """Every object of the committed manifests, in apply order."""
    found: list[dict[str, Any]] = []
    for name, _ in STAGES:
        path = directory / name
        if path.is_file():
            found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _named(kind: str, found: list[dict[str, Any]]) -> list[str]:
    return [str(o["metadata"]["name"]) for o in found if o.get("kind") == kind]


def required_secrets(values: Path = VALUES_FILE) -> list[str]:
    """The existing Secrets the plain manifests refer to (created by the operator, never here)."""
    data = yaml.safe_load(values.read_text()) or {}
    names = [
        str(data.get(section, {}).get("existingSecret") or "")
        for section in ("auth", "database", "redis")
    ]
    return sorted({name for name in names if name})


def apply_plan(
    context: str, directory: Path = RENDERED_DIR, timeout: str = "10m"
) -> list[list[str]]:
    """The kubectl commands that apply the plain manifests in order (Jobs are immutable, so
    the previous migrations Job is deleted first; the workload waits until it completed)."""
    found = objects(directory)
    namespace = _named("Namespace", found)[0]
    plan = [kubectl(context, namespace, "apply", "--filename", str(directory / STAGES[0][0]))]
    plan.append(kubectl(context, namespace, "apply", "--filename", str(directory / STAGES[1][0])))
    for job in _named("Job", found):
        plan.append(kubectl(context, namespace, "delete", "job", job, "--ignore-not-found"))
    if (directory / STAGES[2][0]).is_file():
        plan.append(
            kubectl(context, namespace, "apply", "--filename", str(directory / STAGES[2][0]))
        )
    for job in _named("Job", found):
        plan.append(
            kubectl(
                context,
                namespace,
                "wait",
                "--for=condition=complete",
                f"job/{job}",
                f"--timeout={timeout}",
            )
        )
    plan.append(kubectl(context, namespace, "apply", "--filename", str(directory / STAGES[3][0])))
    for deployment in _named("Deployment", found):
        plan.append(
            kubectl(
                context,
                namespace,
                "rollout",
                "status",
                f"deployment/{deployment}",
                f"--timeout={timeout}",
            )
        )
    return plan


def delete_plan(
    context: str, directory: Path = RENDERED_DIR, *, include_namespace: bool = False
) -> list[list[str]]:
    """The kubectl commands that delete the plain manifests' objects, workload first."""
    namespace = _named("Namespace", objects(directory))[0]
    stages = [name for name, _ in reversed(STAGES) if (directory / name).is_file()]
    if not include_namespace:
        stages.remove(STAGES[0][0])
    return [
        kubectl(
            context, namespace, "delete", "--filename", str(directory / name), "--ignore-not-found"
        )
        for name in stages
    ]


def secret_exists(runner: Runner, context: str, namespace: str, secret: str) -> bool:
    """Does an operator-created Secret exist? (a read-only query, also in dry runs)"""
    code, _, _ = _query(
        runner, kubectl(context, namespace, "get", "secret", secret, "--output=name")
    )
    return code == 0


def simulated_cluster(runner: Runner, context: str) -> bool:
    """True when every node of the cluster is simulated by kwok (``invoke cluster.up``): pods
    are marked Running there but no container runs. False when the nodes cannot be listed."""
    argv = ["kubectl", *(["--context", context] if context else []), "get", "nodes", "-o=json"]
    code, out, _ = _query(runner, argv)
    if code != 0:
        return False
    nodes = json.loads(out).get("items", [])
    annotations = [n["metadata"].get("annotations", {}) for n in nodes]
    return bool(nodes) and all(a.get(NODE_ANNOTATION) == "fake" for a in annotations)


def configured_context(settings: Mapping[str, Any], context: str = "") -> str:
    """``context``, else ``llm_optimizer.kube_context``, else "" (kubectl's current context)."""
    return context or str(settings.get("kube_context", "") or "")


def configured_namespace(settings: Mapping[str, Any], namespace: str = "") -> str:
    """``namespace``, else ``llm_optimizer.namespace``, else the chart's default namespace."""
    return namespace or str(settings.get("namespace", "") or helm.DEFAULT_NAMESPACE)


def rollout_status(
    context: str, namespace: str, instance: str = helm.RELEASE, *, timeout: str = "5s"
) -> list[str]:
    """Has the service's Deployment rolled out (all replicas updated and ready)?"""
    return kubectl(
        context, namespace, "rollout", "status", f"deployment/{instance}", f"--timeout={timeout}"
    )


def rollout_restart(context: str, namespace: str, instance: str = helm.RELEASE) -> list[str]:
    """Restart the service's pods the Deployment's way: a new ReplicaSet rolled out under its
    strategy (RollingUpdate, maxUnavailable 0: the old pods serve until new ones are ready)."""
    return kubectl(context, namespace, "rollout", "restart", f"deployment/{instance}")


def status(context: str, namespace: str, instance: str = helm.RELEASE) -> list[str]:
    """Every object of the release (Helm or plain manifests: both carry the same labels)."""
    return kubectl(
        context,
        namespace,
        "get",
        "deployments,statefulsets,jobs,pods,services,ingresses,hpa,pdb,networkpolicies",
        "--selector",
        f"app.kubernetes.io/instance={instance}",
        "--output=wide",
    )


def logs(
    context: str,
    namespace: str,
    instance: str = helm.RELEASE,
    *,
    follow: bool = False,
    tail: int = 200,
) -> list[str]:
    """Logs of every container (migrations init container included) of the service's pods."""
    argv = kubectl(
        context,
        namespace,
        "logs",
        "--selector",
        f"app.kubernetes.io/instance={instance},app.kubernetes.io/component=server",
        "--all-containers",
        "--prefix",
        f"--tail={tail}",
    )
    return [*argv, "--follow"] if follow else argv
