"""The real node's fixtures: a local cluster (``ops.k8s.cluster``) with one real node beside its
kwok nodes (``ops.k8s.node``), the service image imported into the node, and a host PostgreSQL
on the node's bridge address that the pods reach."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.core import project
from ops.core.runner import Runner
from ops.docker.images import BuildResult
from ops.k8s import cluster, node
from tests._support.cluster import Kube
from tests._support.docker import base_image, docker_engine, service_image  # noqa: F401
from tests._support.postgres import PostgresServer, postgres_server
from tests._support.tools import require_tool

# The image the manifests and the chart name (the repository version): the session's build of
# the service image is tagged so inside the node, Docker's tags are left alone.
RELEASE_IMAGE = f"{project.SERVICE_IMAGE}:{project.version()}"
# Docker's own mounts (containers of other fixtures come and go): not the node's business.
DOCKER_MOUNTS = ("/var/lib/docker/", "/run/docker/")
KUBELET_POD_LOGS = Path("/var/log/pods")  # the kubelet's default: moved into the state dir
DOCKER_LINKS = ("docker0", "br-")
# The kubelet's (shadowed in its namespace) and those kube-proxy could set: left as they were.
HOST_SYSCTLS = (
    *node.SYSCTLS,
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
)  # its networks' bridges (their veths are enslaved to them)


def host_traces() -> dict[str, object]:
    """What of the node could outlive it on this machine: interfaces, iptables chains of every
    table, mounts, cgroup directories, the fixed paths containerd and the kubelet write."""

    def lines(argv: list[str]) -> list[str]:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()

    chains = {
        f"{command} {table}": sorted(
            line.split()[1] for line in lines([command, "-t", table, "-S"]) if line.startswith("-N")
        )
        for command in ("iptables", "ip6tables")
        for table in node.TABLES
    }
    links = [line.split() for line in lines(["ip", "-o", "link", "show"])]
    addresses = [line.split() for line in lines(["ip", "-o", "-4", "addr", "show"])]
    return {
        "links": sorted(
            f[1].rstrip(":")
            for f in links
            if not f[1].startswith(DOCKER_LINKS)
            and not any(
                f[i - 1] == "master" and f[i].startswith(DOCKER_LINKS) for i in range(1, len(f))
            )
        ),
        "addresses": sorted(f[3] for f in addresses if not f[1].startswith(DOCKER_LINKS)),
        "chains": chains,
        "mounts": sorted(
            line
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if not any(docker in line for docker in DOCKER_MOUNTS)
        ),
        "cgroups": sorted(str(p) for p in node.CGROUP_ROOT.glob("*/*") if p.is_dir()),
        "fixed paths": {
            str(d): sorted(map(str, d.iterdir())) if d.is_dir() else None
            for d in (*node.FIXED_DIRS, KUBELET_POD_LOGS)
        },
        "sysctls": {s: Path("/proc/sys", s).read_text().strip() for s in HOST_SYSCTLS},
    }


@dataclass(frozen=True)
class RealNode:
    kube: Kube
    node: node.Node
    postgres: PostgresServer
    cluster_seconds: float
    node_seconds: float
    before: dict[str, object]  # host_traces() before the node came up


@pytest.fixture(scope="session")
def real_node(
    tmp_path_factory: pytest.TempPathFactory,
    service_image: BuildResult,  # noqa: F811
) -> Iterator[RealNode]:
    """Cluster up, the real node joined (``invoke cluster.up --real-node``'s steps), always
    taken down (node first, then the cluster)."""
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (bridge, iptables, cgroups, mounts)")
    for name in (*cluster.COMPONENTS, *node.NODE_TOOLS, *node.HOST_TOOLS, "kubectl", "openssl"):
        require_tool(name)
    for name in ("initdb", "pg_ctl"):
        require_tool(name)
    target = cluster.Cluster(tmp_path_factory.mktemp("rn") / "state")
    runner = Runner(echo=False)
    (image,) = service_image.refs[:1]
    try:
        cluster_seconds = cluster.up(runner, target, timeout=90)
        before = host_traces()
        node_seconds = node.up(runner, target, images=[image], timeout=120)
        real = node.Node(target)
        ctr = node.ctr(real)
        runner.run([*ctr, "images", "tag", "--force", _full(image), _full(RELEASE_IMAGE)])
        with postgres_server(require_tool, listen=(node.GATEWAY,), trust=(node.SUBNET,)) as pg:
            yield RealNode(
                Kube(require_tool("kubectl"), target, cluster_seconds),
                real,
                pg,
                cluster_seconds,
                node_seconds,
                before,
            )
    finally:
        node.down(runner, target)
        cluster.down(target)


def _full(image: str) -> str:
    """The name containerd's CRI gives a short Docker reference."""
    return image if "/" in image else f"docker.io/library/{image}"
