"""Level B: the service on a node that runs containers (``ops.k8s.node``, issue 19).

One real node (kubelet, containerd, CNI bridge, kube-proxy, CoreDNS) joins the local cluster
beside kwok's simulated nodes (the session fixture ``real_node``). On it the operator's own
commands run for real, as the `invoke` CLI in a subprocess: `invoke deploy --target kubernetes
--env prod` and `--target helm --env prod` (its `helm test` runs: cluster DNS and Services from
pods), each followed by `invoke verify --strict` through the Services' ClusterIPs (kube-proxy),
every check passing. The last test takes the node down and finds nothing of it left on the
machine. The tests run in file order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from invoke.exceptions import Exit

from ops.core import project, tools
from ops.core.runner import Runner
from ops.k8s import helm, node
from ops.k8s.cluster import Cluster
from tests._support.cluster import CLUSTER_GO_TOOLS
from tests._support.helm import OPERATOR_SECRET
from tests.infra.node.conftest import RealNode, host_traces

pytestmark = [
    pytest.mark.go_tools(*CLUSTER_GO_TOOLS, *node.NODE_TOOLS),  # Go-built: run last (conftest)
    pytest.mark.docker,
    pytest.mark.postgres,
    pytest.mark.slow,
]
NAMESPACE = helm.DEFAULT_NAMESPACE
SECRET = "llm-optimizer-secrets"  # infra/kubernetes/values.yaml's existingSecret
KWOK_SYSCTLS = {"kernel/panic": "10", "kernel/panic_on_oops": "1", "vm/overcommit_memory": "1"}


@dataclass(frozen=True)
class Ops:
    """The `invoke` CLI against the cluster, as an operator runs it."""

    env: dict[str, str]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=project.ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        print(
            f"invoke {' '.join(args)}: exit {result.returncode}, {time.monotonic() - started:.1f} s"
        )
        print(result.stdout[-6000:])
        if check and result.returncode != 0:
            pytest.fail(f"invoke {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture(scope="module")
def ops(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Ops:
    home = tmp_path_factory.mktemp("real-node-helm-home")
    env = {
        **os.environ,
        **helm.helm_home_env(home),
        "PATH": tools.search_path(),
        "KUBECONFIG": str(real_node.kube.cluster.kubeconfig),
        "INVOKE_LLM_OPTIMIZER_NAMESPACE": NAMESPACE,
    }
    return Ops(env)


def test_the_real_node_joins_beside_the_kwok_nodes(real_node: RealNode, ops: Ops) -> None:
    """Ready, the pinned kubelet on Debian's containerd, reached at the bridge address; the
    kwok nodes cordoned; the kubelet's kernel tunables went to its private files, not to the
    machine's; none of its mounts is in the machine's mount table; `invoke cluster.status` shows
    its processes; a second real node on this machine is refused."""
    print(f"cluster up {real_node.cluster_seconds:.1f} s, node up {real_node.node_seconds:.1f} s")
    nodes = {n["metadata"]["name"]: n for n in real_node.kube.json("get", "nodes")["items"]}
    real = nodes.pop(node.NAME)
    conditions = {c["type"]: c["status"] for c in real["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    info = real["status"]["nodeInfo"]
    assert info["kubeletVersion"] == tools.KUBERNETES
    assert info["containerRuntimeVersion"].startswith("containerd://1.6."), info
    addresses = {a["type"]: a["address"] for a in real["status"]["addresses"]}
    assert addresses["InternalIP"] == node.GATEWAY
    assert nodes
    assert all(n["spec"].get("unschedulable") for n in nodes.values()), nodes
    shadows = real_node.node.root / "sysctl"
    for sysctl, value in KWOK_SYSCTLS.items():
        assert (shadows / sysctl.replace("/", ".")).read_text().strip() == value, sysctl
        assert Path("/proc/sys", sysctl).read_text().strip() != value, sysctl
    mounts = Path("/proc/self/mounts").read_text()
    assert str(real_node.node.root) not in mounts
    status = ops("cluster.status", f"--state-dir={real_node.kube.cluster.root}").stdout
    for name in node.PROCESSES:
        assert f"{name:24} pid " in status, status
    assert f"node {node.NAME:20} Ready" in status
    # One real node per machine: another cluster's is refused, naming this one.
    # (a short path: under an xdist worker's tmp_path containerd's socket would exceed its limit)
    with (
        tempfile.TemporaryDirectory(prefix="rn-") as other,
        pytest.raises(Exit, match=f"a real node of the cluster in {real_node.kube.cluster.root}"),
    ):
        node.preflight(node.Node(Cluster(Path(other))))


def _secret(real_node: RealNode) -> dict[str, str]:
    database = real_node.postgres.create_database("test")
    return {"api-keys": OPERATOR_SECRET["api-keys"], "database-url": database}


def _verify(ops: Ops, real_node: RealNode, target: str, tmp_path: Path) -> str:
    """`invoke verify --strict` through the Services' ClusterIPs: every check passes."""
    kube = real_node.kube
    ip = kube.run(
        "get",
        "service",
        "llm-optimizer",
        f"--namespace={NAMESPACE}",
        "-o=jsonpath={.spec.clusterIP}",
    ).stdout
    metrics = kube.run(
        "get",
        "service",
        "llm-optimizer-metrics",
        f"--namespace={NAMESPACE}",
        "-o=jsonpath={.spec.clusterIP}",
    ).stdout
    for address in (f"{ip}:8080", f"{metrics}:9090"):
        _wait_until_served(address)
    keys = tmp_path / "api-keys"
    keys.write_text(OPERATOR_SECRET["api-keys"])
    verified = ops(
        "verify",
        f"--target={target}",
        "--strict",
        f"--url=http://{ip}:8080",
        f"--metrics-url=http://{metrics}:9090/metrics",
        f"--api-key-file={keys}",
        check=False,
    )
    out = verified.stdout + verified.stderr
    assert verified.returncode == 0, out
    assert f"verify --target {target}: every check passed" in out
    assert "FAIL" not in out
    assert "not run" not in out
    return out


def _wait_until_served(address: str, timeout: float = 15.0) -> None:
    """Wait until kube-proxy has programmed the Service's endpoints (a ClusterIP without them
    refuses connections; kube-proxy syncs at most once a second, one EndpointSlice may be
    programmed a second after the other's)."""
    host, port = address.rsplit(":", 1)
    started = time.monotonic()
    error: OSError | None = None
    while time.monotonic() - started < timeout:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError as refused:
            error = refused
            time.sleep(0.1)
            continue
        print(f"{address} served after {time.monotonic() - started:.1f} s")
        return
    pytest.fail(f"{address} not served within {timeout:g} s: {error}")


def _pods_on_the_real_node(real_node: RealNode) -> list[str]:
    pods = real_node.kube.json("get", "pods", f"--namespace={NAMESPACE}")["items"]
    assert pods
    return [p["spec"].get("nodeName", "") for p in pods if p["status"]["phase"] == "Running"]


SERVER = "app.kubernetes.io/name=llm-optimizer,app.kubernetes.io/component=server"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and "deletionTimestamp" not in pod["metadata"]


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 90.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.5)
    took = time.monotonic() - started
    print(f"{what}: {took:.1f} s")
    return took


def _killed_container_restarts_and_deleted_pod_is_replaced(real_node: RealNode) -> None:
    """The kubelet at work: the service's process killed (SIGKILL to its container's task in
    the node's containerd) is restarted in place and the pod is Ready again; a deleted pod is
    replaced by a new Ready one on the node."""
    kube = real_node.kube
    pod = kube.pods(NAMESPACE, SERVER)[0]
    name = pod["metadata"]["name"]
    container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    kill = [*node.ctr(real_node.node), "tasks", "kill", "--signal", "SIGKILL", container]
    Runner(echo=False).run(kill)

    def restarted() -> bool:
        current = kube.json("get", "pod", name, f"--namespace={NAMESPACE}")
        return current["status"]["containerStatuses"][0]["restartCount"] >= 1 and _ready(current)

    _wait_for(f"killed container of {name} restarted, pod Ready", restarted)
    kube.run("delete", "pod", name, f"--namespace={NAMESPACE}", "--wait=true")

    def replaced() -> bool:
        pods = [p for p in kube.pods(NAMESPACE, SERVER) if _ready(p)]
        names = {p["metadata"]["name"] for p in pods}
        return (
            len(pods) == 2
            and name not in names
            and all(p["spec"]["nodeName"] == node.NAME for p in pods)
        )

    _wait_for(f"deleted pod {name} replaced", replaced)


def test_manifests_deploy_prod_and_verify_strict(
    real_node: RealNode, ops: Ops, tmp_path: Path
) -> None:
    """`invoke deploy --target kubernetes --env prod` (namespace, migrations Job against the
    host PostgreSQL, two replicas on the real node), `kubectl logs`, a killed container
    restarted and a deleted pod replaced, then `invoke verify --target kubernetes --strict`."""
    kube = real_node.kube
    kube.run(
        "apply", "--filename", str(project.ROOT / "infra/kubernetes/manifests/00-namespace.yaml")
    )
    kube.run("wait", "--for=create", f"--namespace={NAMESPACE}", "serviceaccount/default")
    kube.create_secret(NAMESPACE, SECRET, _secret(real_node))
    started = time.monotonic()
    ops("deploy", "--target", "kubernetes", "--env", "prod")
    print(f"deploy --target kubernetes --env prod: {time.monotonic() - started:.1f} s")
    running = _pods_on_the_real_node(real_node)
    assert running.count(node.NAME) == 2, running
    # The API server reaches the kubelet (its client certificate, the node's InternalIP).
    logs = kube.run("logs", f"--namespace={NAMESPACE}", "deployment/llm-optimizer").stdout
    assert logs.strip()
    _killed_container_restarts_and_deleted_pod_is_replaced(real_node)
    started = time.monotonic()
    _verify(ops, real_node, "kubernetes", tmp_path)
    print(f"verify --target kubernetes: {time.monotonic() - started:.1f} s")
    ops("deploy.down", "--target", "kubernetes")
    kube.run("delete", "pods", "--all", f"--namespace={NAMESPACE}", "--wait=true", "--timeout=120s")


def test_chart_deploy_prod_runs_helm_test_and_verify_strict(
    real_node: RealNode, ops: Ops, tmp_path: Path
) -> None:
    """`invoke deploy --target helm --env prod`: migrations as a hook, then `helm test` runs on
    the real node (its pods reach the Service by name: CoreDNS, kube-proxy) and passes; then
    `invoke verify --target helm --strict`."""
    kube = real_node.kube
    kube.run("delete", "secret", SECRET, f"--namespace={NAMESPACE}", "--ignore-not-found")
    kube.create_secret(NAMESPACE, SECRET, _secret(real_node))
    started = time.monotonic()
    deployed = ops("deploy", "--target", "helm", "--env", "prod")
    print(f"deploy --target helm --env prod: {time.monotonic() - started:.1f} s")
    out = deployed.stdout + deployed.stderr
    assert "helm test skipped" not in out
    assert "Succeeded" in out, out
    assert "Failed" not in out, out
    running = _pods_on_the_real_node(real_node)
    assert running.count(node.NAME) >= 2, running
    started = time.monotonic()
    _verify(ops, real_node, "helm", tmp_path)
    print(f"verify --target helm: {time.monotonic() - started:.1f} s")
    ops("deploy.down", "--target", "helm")


def test_down_leaves_nothing_of_the_node_on_the_machine(real_node: RealNode) -> None:
    """`down` stops every process of the node and removes its bridge, iptables chains,
    cgroups, mounts and files outside the state directory: the machine's interfaces, chains,
    mounts, cgroups, kernel tunables and fixed paths are as they were before it came up. The
    hard case: pods still running and the API server gone (killed), so nothing is drained and
    no CNI DEL runs; `down` kills the containers itself. Idempotent."""
    kube = real_node.kube
    kube.run("create", "deployment", "sleepers", f"--image={node.PAUSE_IMAGE}", "--replicas=3")
    kube.run("rollout", "status", "deployment/sleepers", "--timeout=60s")
    pods = kube.json("get", "pods", "--selector=app=sleepers")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {node.NAME}
    apiserver = int(kube.cluster.record()["pids"]["kube-apiserver"])
    os.kill(apiserver, signal.SIGKILL)
    record = real_node.node.record()
    pids = {name: int(pid) for name, pid in record["pids"].items()}
    started = time.monotonic()
    stopped = node.down(Runner(echo=False), kube.cluster)
    print(f"node down (3 pods, no API server): {time.monotonic() - started:.1f} s")
    assert set(stopped) == set(node.PROCESSES)
    assert not [n for n, p in pids.items() if Path(f"/proc/{p}").exists()]
    after = host_traces()
    print(json.dumps(after["chains"], indent=1))
    assert real_node.before == after
    assert not node.LOCK.exists()
    assert not real_node.node.record_file.exists()
    assert node.down(Runner(echo=False), kube.cluster) == []
