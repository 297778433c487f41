"""Level A: the chart and the plain manifests on a real API server (`invoke cluster.up`).

Every scenario is applied server-side (dry run, then for real) into its own namespace labelled
PodSecurity ``restricted`` (enforce, warn, audit): the API server's validation, defaulting,
admission (PodSecurity included) and RBAC decide, not a schema copy. Pods run on kwok's
simulated nodes, so rollouts and Jobs complete without containers; what a container does is
proven elsewhere (tests/infra/docker, tests/infra/helm/test_helm_runtime.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from ops.core import tools
from ops.core.runner import Runner
from ops.k8s import cluster, helm
from ops.k8s import kube as plain
from tests._support.cluster import CLUSTER_GO_TOOLS, Kube, Objects, warnings
from tests._support.helm import SCENARIOS, Helm, scenario_values

pytestmark = pytest.mark.go_tools(*CLUSTER_GO_TOOLS)  # Go-built: run last (tests/conftest.py)
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
RESOURCES = (
    "pods",
    "pods/exec",
    "pods/log",
    "secrets",
    "configmaps",
    "services",
    "endpoints",
    "serviceaccounts",
    "deployments.apps",
    "jobs.batch",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "leases.coordination.k8s.io",
    "events",
)


def _render(helm_cli: Helm, values: helm.Values, namespace: str) -> Objects:
    out = helm_cli.run(helm.template(values, namespace=namespace)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_cluster_is_up_with_the_catalogued_version(kube: Kube) -> None:
    version = kube.json("version")["serverVersion"]["gitVersion"]
    assert version == tools.KUBERNETES
    nodes = kube.json("get", "nodes")["items"]
    assert len(nodes) == kube.cluster.nodes
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    plugins = " ".join(kube.cluster.record()["pids"])  # every component is recorded and running
    assert plugins.split() == list(kube.cluster.record()["pids"])
    assert kube.start_seconds < 60, f"cluster start took {kube.start_seconds:.1f} s"


def test_operator_crds_are_served_from_the_pinned_api_types(kube: Kube) -> None:
    """controller-gen's CRDs of the pinned prometheus-operator module are established."""
    for name in cluster.OPERATOR_CRDS:
        crd = kube.json("get", "crd", f"{name}.{cluster.OPERATOR_GROUP}")
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established["Established"] == "True", name
        annotations = crd["metadata"]["annotations"]
        assert annotations["controller-gen.kubebuilder.io/version"] == tools.CONTROLLER_GEN.version
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]


def test_monitoring_objects_meet_the_operator_schemas(kube: Kube, helm_cli: Helm) -> None:
    """The monitoring scenario's ServiceMonitor and PrometheusRule are applied for real (in the
    scenario test); here: the CRD schema is what accepts them, since a broken copy is refused."""
    namespace = kube.namespace("chart-operator-schema")
    objects = _render(helm_cli, scenario_values("monitoring"), namespace)
    kinds = {o["kind"]: o for o in objects if o["kind"] in ("ServiceMonitor", "PrometheusRule")}
    assert sorted(kinds) == ["PrometheusRule", "ServiceMonitor"]
    rule = kinds["PrometheusRule"]
    assert rule["spec"]["groups"], "the PrometheusRule holds no group"
    assert warnings(kube.apply(list(kinds.values()), namespace, dry_run=True)) == []
    late = json.loads(json.dumps(rule))
    late["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"  # not a Prometheus duration
    twice = json.loads(json.dumps(rule))
    twice["spec"]["groups"].append(twice["spec"]["groups"][0])  # a group name twice
    monitor = json.loads(json.dumps(kinds["ServiceMonitor"]))
    monitor["spec"]["endpoints"][0]["scheme"] = "ftp"
    for bad, wanted in (
        (late, "spec.groups[0].rules[0].for"),
        (twice, "duplicate entries for key"),
        (monitor, "spec.endpoints[0].scheme"),
    ):
        result = kube.run(
            "apply",
            "--server-side",
            "--dry-run=server",
            f"--namespace={namespace}",
            "-f",
            "-",
            stdin=json.dumps(bad),
            check=False,
        )
        assert result.returncode != 0, wanted
        assert wanted in result.stderr, result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_applies_and_rolls_out_under_restricted(
    kube: Kube, helm_cli: Helm, scenario: str
) -> None:
    namespace = kube.namespace(f"chart-{scenario}")
    objects = _render(helm_cli, scenario_values(scenario), namespace)
    assert warnings(kube.apply(objects, namespace, dry_run=True)) == []
    assert warnings(kube.apply(objects, namespace)) == []
    # The Prometheus Operator's kinds (monitoring scenario) are stored as rendered: no field was
    # unknown to the operator's schema (kubectl would warn) or pruned.
    for obj in (o for o in objects if o["apiVersion"].startswith(cluster.OPERATOR_GROUP)):
        stored = kube.json("get", obj["kind"], obj["metadata"]["name"], f"--namespace={namespace}")
        assert stored["spec"] == obj["spec"], obj["kind"]
    kube.provide_volumes(objects, namespace)
    kube.settle(objects, namespace)
    # PodSecurity `restricted` admitted every pod the workloads asked for: none was refused.
    events = kube.json("get", "events", f"--namespace={namespace}")["items"]
    refused = [e["message"] for e in events if e.get("reason") == "FailedCreate"]
    assert refused == []
    pods = kube.json("get", "pods", f"--namespace={namespace}")["items"]
    assert pods, f"{scenario}: no pod was created"


def test_plain_manifests_apply_in_order(kube: Kube) -> None:
    stages = [
        (name, [o for o in yaml.safe_load_all((plain.RENDERED_DIR / name).read_text()) if o])
        for name, _ in plain.STAGES
    ]
    namespace = next(o for _, objs in stages for o in objs if o["kind"] == "Namespace")
    name = namespace["metadata"]["name"]
    labels: dict[str, Any] = namespace["metadata"].get("labels", {})
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    for stage, objects in stages:
        assert warnings(kube.apply(objects, name, dry_run=True)) == [], stage
        assert warnings(kube.apply(objects, name)) == [], stage
        if stage == "00-namespace.yaml":
            kube.run("wait", "--for=create", f"--namespace={name}", "serviceaccount/default")
        kube.settle(objects, name)
    assert kube.json("get", "pods", f"--namespace={name}")["items"]


@pytest.mark.parametrize(
    "rules",
    [
        [],
        [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
    ],
    ids=["chart-default", "extra-rules"],
)
def test_service_account_can_do_exactly_what_its_role_grants(
    kube: Kube, helm_cli: Helm, tmp_path: Any, rules: list[dict[str, Any]]
) -> None:
    namespace = kube.namespace(f"rbac-{len(rules)}")
    values_file = tmp_path / "rbac-values.yaml"
    values_file.write_text(yaml.safe_dump({"rbac": {"rules": rules}}))
    objects = _render(helm_cli, helm.Values(files=(values_file,)), namespace)
    rbac = [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    assert warnings(kube.apply(rbac, namespace)) == []
    account = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
    user = f"system:serviceaccount:{namespace}:{account}"
    granted = {
        (verb, f"{resource}.{group}".rstrip("."))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    answers = {
        (verb, resource): kube.can_i(verb, resource, namespace, user)
        for resource in RESOURCES
        for verb in VERBS
    }
    assert {key for key, yes in answers.items() if yes} == granted
    # Nothing outside its namespace, and nothing cluster-wide.
    kube.namespace(f"rbac-{len(rules)}-other")
    assert not kube.can_i("get", "configmaps", f"rbac-{len(rules)}-other", user)
    assert not kube.can_i("list", "nodes", namespace, user)
    assert not kube.can_i("list", "namespaces", namespace, user)


def test_cluster_up_is_idempotent_and_down_leaves_nothing(
    kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = cluster.Cluster(tmp_path_factory.mktemp("own-cluster") / "state", nodes=1)
    runner = Runner(echo=False)
    try:
        cluster.up(runner, own, timeout=90)
        record = own.record()
        assert cluster.status(runner, own) == []
        assert cluster.up(runner, own) < 5  # already up: nothing restarted
        assert own.record()["pids"] == record["pids"]
    finally:
        stopped = cluster.down(own)
    assert sorted(stopped) == sorted(cluster.COMPONENTS)
    assert not own.root.exists()
    assert not any(cluster.is_running(pid, name) for name, pid in record["pids"].items())
    assert not any(cluster.port_in_use(port) for port in record["ports"].values())
    assert cluster.status(runner, own) != []  # and status says so
    assert cluster.down(own) == []  # idempotent
