"""The real node's names on the machine and its iptables clean-up (``ops.k8s.node``), without a
node: what `down` removes is derived from the state directory and from `iptables -S` alone."""

from __future__ import annotations

from pathlib import Path

from ops.k8s import node
from ops.k8s.cluster import Cluster

# `iptables -t nat -S` with a pod's bridge masquerade chain (comment quoted as iptables prints
# it), kube-proxy's chains and Docker's, which must stay.
NAT = """\
-P PREROUTING ACCEPT
-P POSTROUTING ACCEPT
-N CNI-2f6c0d0b1e4e9f3a7c1d2b3a
-N DOCKER
-N KUBE-SERVICES
-N KUBE-POSTROUTING
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.244.0.3/32 -m comment --comment "name: \\"llm-optimizer-1a2b3c4d\\" \
id: \\"abc\\"" -j CNI-2f6c0d0b1e4e9f3a7c1d2b3a
-A CNI-2f6c0d0b1e4e9f3a7c1d2b3a -d 10.244.0.0/24 -j ACCEPT
-A KUBE-POSTROUTING -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
"""


def test_chain_cleanup_removes_the_jumps_then_the_rules_then_the_chains() -> None:
    cni = "CNI-2f6c0d0b1e4e9f3a7c1d2b3a"
    comment = 'name: "llm-optimizer-1a2b3c4d" id: "abc"'
    assert node.chain_cleanup(NAT) == [
        [
            "-D",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ],
        [
            "-D",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "kubernetes postrouting rules",
            "-j",
            "KUBE-POSTROUTING",
        ],
        [
            "-D",
            "POSTROUTING",
            "-s",
            "10.244.0.3/32",
            "-m",
            "comment",
            "--comment",
            comment,
            "-j",
            cni,
        ],
        ["-F", cni],
        ["-F", "KUBE-SERVICES"],
        ["-F", "KUBE-POSTROUTING"],
        ["-X", cni],
        ["-X", "KUBE-SERVICES"],
        ["-X", "KUBE-POSTROUTING"],
    ]


def test_the_node_names_fit_and_follow_the_state_directory(tmp_path: Path) -> None:
    one, other = _node(tmp_path / "a"), _node(tmp_path / "b")
    assert len(one.bridge) <= 15  # IFNAMSIZ - 1
    assert one.bridge != other.bridge
    assert one.cgroup != other.cgroup
    assert one.network != other.network
    assert _node(tmp_path / "a").bridge == one.bridge
    assert node.cni_config(one)["plugins"][0]["bridge"] == one.bridge
    assert node.cni_config(one)["name"] == one.network


def _node(root: Path) -> node.Node:
    return node.Node(Cluster(root))


# `ip -o link show` with two pods' veths on the node's bridge and one of Docker's.
LINKS = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default
7: llmo1a2b3c4d: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT
8: veth67f476ca@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master llmo1a2b3c4d \
state UP mode DEFAULT group default
9: vethd954d106@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master llmo1a2b3c4d state UP
10: veth777995a@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br-d14b024bddba state UP
"""


def test_the_bridge_ports_are_the_pods_veths_only() -> None:
    """What `down` deletes before the bridge: its ports (a pod never deleted leaves its veth as
    long as its network namespace lives), not another bridge's."""
    assert node.bridge_ports(LINKS, "llmo1a2b3c4d") == ["veth67f476ca", "vethd954d106"]
    assert node.bridge_ports(LINKS, "llmo00000000") == []
