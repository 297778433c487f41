"""Level A, releases on the local cluster (`invoke cluster.up`; the session fixture ``kube``).

The operator's commands run for real, as the `invoke` CLI in a subprocess against the cluster's
kubeconfig: `invoke deploy --target helm --env prod` (the migrations hook Job completes before
the Deployment rolls), `invoke helm.upgrade` with changed config (new checksum, new ReplicaSet),
`invoke helm.rollback`, `invoke deploy.down` (only the operator's Secret stays); the same for
`--target kubernetes`; an upgrade from the previous chart (tests/infra/helm/previous); and the
documented disruption behaviour on extra simulated nodes: the PDB stops a node drain at the
budget, replicas prefer distinct nodes, and `maxUnavailable: 0` keeps every old pod until its
replacement is ready.

Pods run on kwok's simulated nodes: they are scheduled, admitted and marked Ready (Jobs' pods
complete) but no container runs, so nothing here proves what the service does in a pod, and
`helm test` is skipped there with the reason (ops.deploy.helm.run_tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke.config import Config
from invoke.context import Context

from ops.core import project, tools
from ops.deploy import helm as helm_target
from ops.deploy import kubernetes as kubernetes_target
from ops.k8s import helm
from ops.k8s import kube as plain
from tests._support.cluster import CLUSTER_GO_TOOLS, Kube, Objects, warnings
from tests._support.helm import OPERATOR_SECRET, Helm

pytestmark = pytest.mark.go_tools(*CLUSTER_GO_TOOLS)  # Go-built: run last (tests/conftest.py)
SECRET = "llm-optimizer-secrets"  # infra/kubernetes/values.yaml's existingSecret
_SECRET_DATA = {key: OPERATOR_SECRET[key] for key in ("api-keys", "database-url")}
# The previous chart: `helm package` of infra/helm/llm-optimizer at commit dfb7c3a, the last
# commit that changed the chart before the cluster tests (unchanged up to 0a920de), with the
# production values of that commit, which made the migrations Job a plain release object.
PREVIOUS = Path(__file__).parent / "previous"
PREVIOUS_CHART = PREVIOUS / "llm-optimizer-0.1.0.tgz"
PREVIOUS_VALUES = PREVIOUS / "values-prod.yaml"
# Extra simulated nodes for the disruption tests: only pods that select and tolerate them land
# there, so draining and cordoning them disturbs no other test.
POOL = ("kwok-pool-0", "kwok-pool-1")
POOL_LABEL = {"llm-optimizer.test/pool": "disruption"}
POOL_TAINT = "llm-optimizer.test/pool=disruption:NoSchedule"


@dataclass(frozen=True)
class Ops:
    """The `invoke` CLI against the local cluster, as an operator runs it."""

    env: dict[str, str]

    def __call__(
        self, *args: str, namespace: str = "", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if namespace:
            env["INVOKE_LLM_OPTIMIZER_NAMESPACE"] = namespace
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=project.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(
            f"invoke {' '.join(args)}: exit {result.returncode}, {time.monotonic() - started:.1f} s"
        )
        if check and result.returncode != 0:
            pytest.fail(f"invoke {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture(scope="module")
def cluster_helm(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The real helm (isolated home) against the local cluster."""
    cli = Helm(tools.require("helm"), tmp_path_factory.mktemp("helm-release-home"))
    cli.env["KUBECONFIG"] = str(kube.cluster.kubeconfig)
    return cli


@pytest.fixture(scope="module")
def ops(cluster_helm: Helm) -> Ops:
    return Ops(dict(cluster_helm.env))


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _operator_namespace(kube: Kube, namespace: str) -> str:
    """A PodSecurity-restricted namespace holding the Secret the production values name."""
    kube.namespace(namespace)
    kube.create_secret(namespace, SECRET, _SECRET_DATA)
    return namespace


@dataclass(frozen=True)
class Rollout:
    """A rolled-out Deployment: its live ReplicaSet and its pod template's checksums."""

    replica_set: str
    config: str
    secret: str


def _rolled_out(kube: Kube, namespace: str, name: str = helm.RELEASE) -> Rollout:
    """Assert the Deployment has fully rolled out (one live ReplicaSet, every pod Ready)."""
    deployment = kube.json("get", "deployment", name, f"--namespace={namespace}")
    status, replicas = deployment["status"], deployment["spec"]["replicas"]
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert status.get("updatedReplicas") == status.get("readyReplicas") == replicas, status
    live = {k: v for k, v in _replica_sets(kube, namespace, name).items() if v[0]}
    assert list(live.values()) == [(replicas, replicas)], live
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    return Rollout(next(iter(live)), annotations["checksum/config"], annotations["checksum/secret"])


def _replica_sets(kube: Kube, namespace: str, deployment: str) -> dict[str, tuple[int, int]]:
    """``deployment``'s ReplicaSets: name → (desired replicas, ready replicas)."""
    items = kube.json("get", "replicasets", f"--namespace={namespace}")["items"]
    return {
        r["metadata"]["name"]: (r["spec"]["replicas"], r["status"].get("readyReplicas", 0))
        for r in items
        if any(o["name"] == deployment for o in r["metadata"].get("ownerReferences", []))
    }


def _migrated_before_rollout(events: Objects, replica_set: str) -> None:
    """The latest migrations Job completed before the Deployment scaled ``replica_set`` up."""
    jobs = [e for e in events if e["involvedObject"]["kind"] == "Job"]
    assert jobs, "no migrations Job ran"
    latest = jobs[-1]["involvedObject"]["uid"]
    completed = [
        int(e["metadata"]["resourceVersion"])
        for e in jobs
        if e["involvedObject"]["uid"] == latest and e["reason"] == "Completed"
    ]
    scaled = [
        int(e["metadata"]["resourceVersion"])
        for e in events
        if e["involvedObject"]["kind"] == "Deployment"
        and e["reason"] == "ScalingReplicaSet"
        and f"replica set {replica_set} " in e["message"]
        and "Scaled up" in e["message"]
    ]
    assert completed, "the latest migrations Job did not complete"
    assert scaled, f"no scale-up of {replica_set}"
    assert completed[0] < min(scaled), "the Deployment rolled before the migrations completed"


def _config_level(kube: Kube, namespace: str) -> str:
    data = kube.json("get", "configmap", helm.RELEASE, f"--namespace={namespace}")["data"]
    return str(data[project.env("log", "level")])


def test_helm_prod_install_upgrade_rollback_uninstall(
    kube: Kube, ops: Ops, cluster_helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = kube.namespace("helm-prod")
    deploy = ("deploy", "--target", "helm", "--env", "prod")
    refused = ops(*deploy, namespace=namespace, check=False)
    assert refused.returncode == 1
    assert f"Secret '{SECRET}' is missing in namespace {namespace}" in _output(refused)
    kube.create_secret(namespace, SECRET, _SECRET_DATA)

    installed = ops(*deploy, namespace=namespace)
    assert "helm test skipped: every node of this cluster is simulated" in installed.stdout
    assert warnings(installed.stderr) == []
    first = _rolled_out(kube, namespace)
    _migrated_before_rollout(kube.events(namespace), first.replica_set)
    # a hook, not a release object: helm knows it as one, and deleted it once it succeeded
    hooks = cluster_helm.run(["helm", "get", "hooks", helm.RELEASE, "--namespace", namespace])
    assert "kind: Job" in hooks.stdout
    assert f"Job/{helm.RELEASE}-migrations" not in kube.leftovers(namespace)
    assert ops("deploy.status", "--target", "helm", namespace=namespace).returncode == 0

    # An upgrade that changes only configuration rolls the pods (checksum/config).
    values = str(plain.VALUES_FILE.relative_to(project.ROOT))
    ops("helm.upgrade", "--values", values, "--set", "config.logLevel=DEBUG", namespace=namespace)
    second = _rolled_out(kube, namespace)
    assert _config_level(kube, namespace) == "DEBUG"
    assert second.config != first.config
    assert second.secret == first.secret
    assert second.replica_set != first.replica_set
    _migrated_before_rollout(kube.events(namespace), second.replica_set)

    # helm rollback restores revision 1: its config, its pod template, its ReplicaSet.
    rolled_back = ops("helm.rollback", namespace=namespace)
    assert "Rollback to 1" in rolled_back.stdout
    third = _rolled_out(kube, namespace)
    assert _config_level(kube, namespace) == "INFO"
    assert third == first

    # The target's restart (verify's restart check): a rolling restart of the release, waited for.
    _restart(ops, monkeypatch, helm_target.restart, namespace)
    _restarted(kube, namespace, third)

    # helm uninstall leaves what the chart documents as kept (NOTES.txt): the namespace, the
    # operator's Secret (a failed migrations Job would stay too; this one succeeded).
    assert "keeps\nthe namespace, the Secrets you created" in installed.stdout
    ops("deploy.down", "--target", "helm", namespace=namespace)
    assert kube.leftovers(namespace) == {f"Secret/{SECRET}"}
    assert ops("deploy.status", "--target", "helm", namespace=namespace, check=False).returncode
    listed = cluster_helm.run(["helm", "list", "--namespace", namespace, "-q"])
    assert listed.stdout.strip() == ""


def _restart(ops: Ops, monkeypatch: pytest.MonkeyPatch, restart: Any, namespace: str = "") -> None:
    """A target's ``restart`` (what `invoke verify` calls) as an operator's invoke would run it,
    against the local cluster."""
    with monkeypatch.context() as patched:
        for key, value in ops.env.items():
            patched.setenv(key, value)
        restart(Context(Config(overrides={"llm_optimizer": {"namespace": namespace}})))


def _restarted(kube: Kube, namespace: str, before: Rollout) -> None:
    """The Deployment rolled out a new ReplicaSet, stamped by `kubectl rollout restart`."""
    after = _rolled_out(kube, namespace)
    assert after.replica_set != before.replica_set
    assert (after.config, after.secret) == (before.config, before.secret)
    deployment = kube.json("get", "deployment", helm.RELEASE, f"--namespace={namespace}")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations


def test_plain_manifests_deploy_status_down(
    kube: Kube, ops: Ops, monkeypatch: pytest.MonkeyPatch
) -> None:
    (namespace_object,) = [o for o in plain.objects() if o["kind"] == "Namespace"]
    namespace = namespace_object["metadata"]["name"]
    # test_helm_cluster applied the manifests server-side into the same namespace: start clean
    kube.run("delete", "namespace", namespace, "--ignore-not-found", "--timeout=120s")
    # the operator creates the namespace from the manifests (PodSecurity labels), then the Secret
    manifest = plain.RENDERED_DIR / plain.STAGES[0][0]
    kube.run("apply", "--filename", str(manifest))
    kube.run("wait", "--for=create", f"--namespace={namespace}", "serviceaccount/default")
    deploy = ("deploy", "--target", "kubernetes", "--env", "prod")
    refused = ops(*deploy, check=False)
    assert refused.returncode == 1
    assert f"Secret(s) {SECRET} missing in namespace {namespace}" in _output(refused)
    kube.create_secret(namespace, SECRET, _SECRET_DATA)

    applied = ops(*deploy)
    assert "Warning" not in _output(applied)
    rollout = _rolled_out(kube, namespace)
    _migrated_before_rollout(kube.events(namespace), rollout.replica_set)
    assert ops("deploy.status", "--target", "kubernetes").returncode == 0
    # The target's restart (verify's restart check): a rolling restart, waited for.
    _restart(ops, monkeypatch, kubernetes_target.restart)
    _restarted(kube, namespace, rollout)
    # No pod really runs on kwok's nodes: `invoke verify` refuses at once, saying why and what
    # it needs, rather than waiting on a service that cannot answer.
    verified = ops("verify", "--target", "kubernetes", check=False)
    assert verified.returncode == 1, _output(verified)
    assert "verify --target kubernetes cannot run: every node" in verified.stderr
    assert "every node of this cluster is simulated by kwok" in verified.stderr
    assert "verify needs a cluster whose nodes run containers" in verified.stderr

    ops("deploy.down", "--target", "kubernetes")
    assert kube.leftovers(namespace) == {f"Secret/{SECRET}"}
    assert ops("deploy.status", "--target", "kubernetes", check=False).returncode == 3


def test_upgrade_from_the_previous_chart(kube: Kube, ops: Ops, cluster_helm: Helm) -> None:
    namespace = _operator_namespace(kube, "helm-upgrade")
    previous = helm.Values(files=(PREVIOUS_VALUES,))
    cluster_helm.run(
        helm.install(
            previous, context="", namespace=namespace, chart=PREVIOUS_CHART, create_namespace=False
        )
    )
    before = _rolled_out(kube, namespace)
    # that chart's production values made the migrations Job a release object, not a hook
    assert f"Job/{helm.RELEASE}-migrations" in kube.leftovers(namespace)

    ops("deploy", "--target", "helm", "--env", "prod", namespace=namespace)
    history = cluster_helm.run(
        ["helm", "history", helm.RELEASE, "--namespace", namespace, "-o", "json"]
    )
    revisions = json.loads(history.stdout)
    assert [(r["revision"], r["status"]) for r in revisions] == [(1, "superseded"), (2, "deployed")]
    after = _rolled_out(kube, namespace)
    # the same production rendering: the pods were not restarted for nothing
    assert after == before
    # the pre-upgrade hook replaced the old Job (before-hook-creation), ran, and was deleted
    completed = [
        e
        for e in kube.events(namespace)
        if e["involvedObject"]["kind"] == "Job" and e["reason"] == "Completed"
    ]
    assert len({e["involvedObject"]["uid"] for e in completed}) == 2
    assert f"Job/{helm.RELEASE}-migrations" not in kube.leftovers(namespace)
    ops("deploy.down", "--target", "helm", namespace=namespace)
    assert kube.leftovers(namespace) == {f"Secret/{SECRET}"}


def test_seed_install_line_is_refused_with_what_to_set(kube: Kube, cluster_helm: Helm) -> None:
    namespace = kube.namespace("seed-line")
    seed = helm.Values(sets={"postgresql.auth.password": "p4ss", "redis.auth.password": "r3dis"})
    argv = helm.install(seed, context="", namespace=namespace, atomic=False, wait=False)
    result = cluster_helm.run(argv, check=False)
    assert result.returncode != 0
    for fix in ("database.existingSecret=NAME", "postgresql.enabled=true"):
        assert fix in result.stderr
    for fix in ("redis.existingSecret=NAME", "redisServer.enabled=true"):
        assert fix in result.stderr
    assert "docs/kubernetes.md" in result.stderr
    assert "schema" not in result.stderr
    listed = cluster_helm.run(["helm", "list", "--namespace", namespace, "-q"])
    assert listed.stdout.strip() == ""


# --- disruptions on two extra simulated nodes ---------------------------------------------------


@pytest.fixture(scope="module")
def pool(kube: Kube) -> Iterator[str]:
    """Two tainted kwok nodes and a namespace whose workloads select and tolerate them."""
    kube.add_nodes(POOL, POOL_LABEL, POOL_TAINT)
    namespace = _operator_namespace(kube, "disruption")
    try:
        yield namespace
    finally:
        kube.run("delete", "namespace", namespace, "--wait=false")
        kube.run("delete", "node", *POOL)


def _workload(
    helm_cli: Helm, tmp_path: Path, namespace: str, release: str, **extra: Any
) -> Objects:
    """The production rendering (infra/kubernetes/values.yaml) of release ``release``, on
    the pool: its ServiceAccount, ConfigMap, Deployment and PodDisruptionBudget."""
    key, _, rest = POOL_TAINT.partition("=")
    value, _, effect = rest.partition(":")
    overrides = {
        "nodeSelector": POOL_LABEL,
        "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": effect}],
        **extra,
    }
    path = tmp_path / f"{release}-values.yaml"
    path.write_text(yaml.safe_dump(overrides))
    values = helm.Values(files=(plain.VALUES_FILE, path), sets=plain.PLAIN_SETS)
    out = helm_cli.run(
        helm.template(values, release=release, namespace=namespace, skip_tests=True)
    ).stdout
    kinds = ("ServiceAccount", "ConfigMap", "Deployment", "PodDisruptionBudget")
    return [o for o in yaml.safe_load_all(out) if o and o["kind"] in kinds]


def _server_pods(kube: Kube, namespace: str, release: str) -> Objects:
    selector = f"app.kubernetes.io/component=server,app.kubernetes.io/instance={release}"
    return kube.pods(namespace, selector)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp")


def _observed(kube: Kube, namespace: str, name: str) -> bool:
    """Has the Deployment controller acted on the Deployment's latest spec?"""
    deployment = kube.json("get", "deployment", name, f"--namespace={namespace}")
    return bool(
        deployment["status"].get("observedGeneration") == deployment["metadata"]["generation"]
    )


def _remove(kube: Kube, objects: Objects, namespace: str) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kube.run("delete", f"--namespace={namespace}", "--wait=false", "-f", "-", stdin=body)


def test_replicas_prefer_distinct_nodes(
    kube: Kube, helm_cli: Helm, pool: str, tmp_path: Path
) -> None:
    """values.yaml: an empty `affinity` prefers spreading replicas over nodes (not required)."""
    objects = _workload(helm_cli, tmp_path, pool, "spread")
    try:
        kube.apply(objects, pool)
        kube.settle(objects, pool)
        nodes = [p["spec"]["nodeName"] for p in _server_pods(kube, pool, "spread")]
        assert sorted(nodes) == sorted(POOL)
        # preferred, not required: a third replica still runs, beside one of the others
        kube.run("scale", "deployment/spread-llm-optimizer", "--replicas=3", f"--namespace={pool}")
        kube.settle(objects, pool)
        pods = _server_pods(kube, pool, "spread")
        assert len(pods) == 3
        assert all(_ready(p) for p in pods)
        assert {p["spec"]["nodeName"] for p in pods} == set(POOL)
    finally:
        _remove(kube, objects, pool)


def test_node_drain_stops_at_the_disruption_budget(
    kube: Kube, helm_cli: Helm, pool: str, tmp_path: Path
) -> None:
    """Two replicas, `minAvailable: 1`: the eviction API lets one pod go, never the last."""
    objects = _workload(helm_cli, tmp_path, pool, "pdb")
    first, second = POOL
    budget = ("--for=jsonpath={.status.disruptionsAllowed}=1", "pdb/pdb-llm-optimizer")
    drain = ("drain", "--ignore-daemonsets", "--delete-emptydir-data", "--pod-selector")
    selector = "app.kubernetes.io/instance=pdb"
    try:
        kube.apply(objects, pool)
        kube.settle(objects, pool)
        kube.run("wait", *budget, f"--namespace={pool}", "--timeout=30s")
        kube.run(*drain, selector, first, "--timeout=60s")  # one pod goes: within the budget
        kube.settle(objects, pool)
        pods = _server_pods(kube, pool, "pdb")
        assert {p["spec"]["nodeName"] for p in pods} == {second}  # replaced on the other node
        kube.run("wait", *budget, f"--namespace={pool}", "--timeout=30s")

        # Both pods are on `second` now and every node is cordoned: the first eviction is
        # allowed, its replacement cannot be scheduled, so the second eviction is refused.
        result = kube.run(*drain, selector, second, "--timeout=8s", check=False)
        assert result.returncode != 0
        assert "violate the pod's disruption budget" in result.stderr, result.stderr
        pods = _server_pods(kube, pool, "pdb")
        ready = [p for p in pods if _ready(p)]
        assert [p["spec"]["nodeName"] for p in ready] == [second]
        assert [p["status"]["phase"] for p in pods if not _ready(p)] == ["Pending"]
        pdb = kube.json("get", "pdb", "pdb-llm-optimizer", f"--namespace={pool}")["status"]
        assert (pdb["currentHealthy"], pdb["disruptionsAllowed"]) == (1, 0)
    finally:
        kube.run("uncordon", *POOL)
        _remove(kube, objects, pool)


def test_rolling_update_keeps_every_old_pod_until_replaced(
    kube: Kube, helm_cli: Helm, pool: str, tmp_path: Path
) -> None:
    """`maxUnavailable: 0`: an update whose new pods never become ready takes no old pod away
    (with Kubernetes' default, 25% of 4 = 1, one would go at once: the control below)."""
    objects = _workload(helm_cli, tmp_path, pool, "surge", replicaCount=4)
    name = "surge-llm-optimizer"
    try:
        kube.apply(objects, pool)
        kube.settle(objects, pool)
        old = _rolled_out(kube, pool, name).replica_set
        # the next revision's pods select a node that does not exist: they stay Pending
        stuck = _workload(
            helm_cli,
            tmp_path,
            pool,
            "surge",
            replicaCount=4,
            nodeSelector={**POOL_LABEL, "llm-optimizer.test/none": "true"},
        )
        kube.apply([o for o in stuck if o["kind"] == "Deployment"], pool)
        deadline = time.monotonic() + 20
        while len(_replica_sets(kube, pool, name)) < 2 or not _observed(kube, pool, name):
            assert time.monotonic() < deadline, "the Deployment controller never reacted"
            time.sleep(0.2)
        for _ in range(6):  # over ~3 s after the controller's decision: no old pod goes
            sets = _replica_sets(kube, pool, name)
            assert len(sets) == 2, sets
            assert sets[old] == (4, 4), sets
            new = next(v for k, v in sets.items() if k != old)
            assert new == (1, 0), sets  # maxSurge 25% of 4: one new pod, never ready
            time.sleep(0.5)
        deployment = kube.json("get", "deployment", name, f"--namespace={pool}")["status"]
        assert deployment["availableReplicas"] == 4

        patch = {"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 1}}}}
        kube.run(
            "patch",
            "deployment",
            name,
            f"--namespace={pool}",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        deadline = time.monotonic() + 20
        while _replica_sets(kube, pool, name)[old][0] != 3:
            assert time.monotonic() < deadline, "the control rollout never scaled down"
            time.sleep(0.3)
    finally:
        _remove(kube, objects, pool)
