"""One real node beside kwok's simulated ones (``invoke cluster.up --real-node``).

kwok's nodes run no container. This module adds one node that does, to a cluster of
``ops.k8s.cluster``: a kubelet (built like the control plane, ``ops.core.tools``) on a containerd
of its own (Debian's, never Docker's: its own root, state and socket under the state directory),
the CNI bridge, host-local, loopback, portmap and firewall plugins, kube-proxy (iptables mode:
Services answer on their ClusterIP, from the host too) and a CoreDNS with the ``kubernetes``
plugin (names of Services, from pods). Nothing is pulled: the sandbox (pause) image is built here
from ``infra/kubernetes/node/pause`` and images are imported with ``docker save`` + ``ctr import``.

What it needs from the machine, and why (measured on a 2-core Firecracker VM; docs/kubernetes.md):

- root; cgroup v1 (the hybrid layout this machine has: kubelet ``failCgroupV1: false``,
  ``cgroupDriver: cgroupfs``); iptables, iproute2, util-linux, Debian's containerd and runc.
- The node IP: the kubelet refuses a loopback address and the kernel has no ``dummy`` device, so
  the CNI bridge is made first and its gateway address (``GATEWAY``) is the node's IP, the
  kubelet's bind address and CoreDNS's address. It is reachable from this host and its pods only.
- containerd and the kubelet run in a private mount namespace (held by a ``pause`` process):
  volume, rootfs and shm mounts live and die with it. In it, private files are bind-mounted over
  the kernel tunables the kubelet writes (``SYSCTLS``: host-wide, not namespaced), so the shared
  machine's values are never changed.
- containerd's CRI ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, and runc cannot
  set the negative oom_score_adj containerd gives sandboxes without it.
- Names derived from the state directory (bridge, cgroup root, CNI network), so ``down`` removes
  exactly what ``up`` made. kube-proxy's ``KUBE-*`` chains and the CNI plugins' ``CNI-*`` chains
  have fixed names, so one real node at a time per machine (``LOCK``).

``down`` deletes the node's pods (so CNI DEL runs), stops CoreDNS, kube-proxy, the kubelet, the
containers, containerd and the namespace holder, then removes the iptables chains, the bridge, the
cgroups and every file the node wrote outside the state directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from ops.core import project, tools
from ops.core.ports import free_port
from ops.core.runner import Runner
from ops.k8s import cluster as k8s_cluster
from ops.k8s.cluster import HOST, Cluster

NAME = "real-node-0"
SUBNET = "10.244.0.0/24"  # the pods' addresses (host-local IPAM), kube-proxy's clusterCIDR
GATEWAY = "10.244.0.1"  # the bridge's address: node IP, kubelet address, cluster DNS
PREFIX = 24
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "llm-optimizer.local/pause:1"
PAUSE_SOURCE = project.ROOT / "infra" / "kubernetes" / "node" / "pause"
# The kernel tunables the kubelet sets (protectKernelDefaults: false): shadowed in its namespace.
SYSCTLS = (
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
)
# Processes of the node, in start order (the record's pids): name -> the binary is_running sees.
PROCESSES = {
    "node-namespace": "pause",
    "containerd": "containerd",
    "kubelet": "kubelet",
    "kube-proxy": "kube-proxy",
    "coredns": "coredns",
}
CHAIN_PREFIXES = ("CNI-", "KUBE-")  # the CNI plugins' and kube-proxy's iptables chains
TABLES = ("filter", "nat", "mangle")
HOST_TOOLS = (
    "containerd",
    "ctr",
    "runc",
    "ip",
    "iptables",
    "ip6tables",
    "unshare",
    "nsenter",
    "mount",
)
NODE_TOOLS = ("kubelet", "kube-proxy", "coredns", *(f"cni-{p}" for p in tools.CNI_PLUGINS))
LOCK = Path("/run/llm-optimizer-real-node")  # machine-wide: the state directory of the one node
SOCKET_MAX = 100  # a unix socket path must fit sockaddr_un (108 bytes)
CGROUP_ROOT = Path("/sys/fs/cgroup")
POD_LOG_LINKS = Path("/var/log/containers")  # the kubelet's fixed directory of log symlinks
CNI_CACHE = Path("/var/lib/cni/results")  # containerd's CNI result cache (fixed in 1.6)
NETNS_DIR = Path("/run/netns")  # containerd's CRI network namespaces (fixed in 1.6)
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")  # the kubelet's socket (fixed path)
# Directories at fixed paths containerd and the kubelet create when absent: `down` removes
# those that did not exist before `up` once they are empty (deepest first).
FIXED_DIRS: tuple[Path, ...] = (NETNS_DIR, POD_LOG_LINKS, CNI_CACHE, CNI_CACHE.parent)
FIXED_DIRS += (DEVICE_PLUGINS, DEVICE_PLUGINS.parent)


@dataclass(frozen=True)
class Node:
    """Paths and names of the real node of one cluster state directory."""

    cluster: Cluster
    name: str = NAME

    @property
    def root(self) -> Path:
        return self.cluster.root / "node"

    @property
    def record_file(self) -> Path:
        return self.cluster.root / k8s_cluster.NODE_RECORD

    @property
    def slug(self) -> str:
        """8 hex digits of the state directory's path: the node's names on the machine."""
        return hashlib.sha256(str(self.cluster.root.resolve()).encode()).hexdigest()[:8]

    @property
    def bridge(self) -> str:
        return f"llmo{self.slug}"  # 12 characters: an interface name has at most 15

    @property
    def network(self) -> str:
        """The CNI network's name (containerd caches results as <network>-<id>-<ifname>)."""
        return f"llm-optimizer-{self.slug}"

    @property
    def cgroup(self) -> str:
        """The kubelet's cgroupRoot: kubepods and every container live under it."""
        return f"/llm-optimizer-{self.slug}"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_bin(self) -> Path:
        return self.root / "cni" / "bin"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    def record(self) -> dict[str, Any]:
        """What ``up`` has written so far ({} when there is no node)."""
        return k8s_cluster.read_record(self.record_file)

    def save(self, record: dict[str, Any]) -> None:
        self.record_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_file.with_name(".node.json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.record_file)


# --- configuration files --------------------------------------------------------------------------


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these values


def containerd_config(node: Node) -> str:
    """containerd's config (version 2): everything under the node's directory, CRI on."""
    base = node.root / "containerd"
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    runc = f"{cri}.containerd.runtimes.runc"
    return "\n".join(
        [
            "version = 2",
            f"root = {_toml(str(base / 'root'))}",
            f"state = {_toml(str(base / 'state'))}",
            "oom_score = 0",
            "[grpc]",
            f"  address = {_toml(str(node.socket))}",
            "[ttrpc]",
            '  address = ""',
            "[debug]",
            '  address = ""',
            '  level = "info"',
            "[metrics]",
            '  address = ""',
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml(str(base / 'opt'))}",
            f"{cri}]",
            f"  sandbox_image = {_toml(PAUSE_IMAGE)}",
            f"  stream_server_address = {_toml(HOST)}",
            '  stream_server_port = "0"',
            "  enable_selinux = false",
            "  disable_apparmor = true",
            "  restrict_oom_score_adj = true",  # no CAP_SYS_RESOURCE: no negative oom_score_adj
            f"{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"{runc}]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc}.options]",
            f"  BinaryName = {_toml(str(tools.require('runc')))}",
            f"  Root = {_toml(str(base / 'runc'))}",
            "  SystemdCgroup = false",
            f"{cri}.cni]",
            f"  bin_dir = {_toml(str(node.cni_bin))}",
            f"  conf_dir = {_toml(str(node.cni_conf))}",
            "  max_conf_num = 1",
            "",
        ]
    )


def cni_config(node: Node) -> dict[str, Any]:
    """The pods' network: the node's bridge, host-local addresses of SUBNET, port mappings, and
    the firewall plugin (accept rules per pod in front of Docker's FORWARD policy DROP)."""
    return {
        "cniVersion": "1.0.0",
        "name": node.network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                    "dataDir": str(node.root / "cni" / "ipam"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": "iptables"},
        ],
    }


def kubelet_config(node: Node, ports: dict[str, int]) -> dict[str, Any]:
    """The kubelet's KubeletConfiguration (JSON is YAML): authenticated, webhook-authorized,
    cgroup v1 under the node's cgroup root, images never garbage-collected (they are imported)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "address": GATEWAY,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": HOST,
        "healthzPort": ports["kubelet-healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(node.cluster.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "protectKernelDefaults": False,
        "resolvConf": "/etc/resolv.conf",
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "podLogsDir": str(node.root / "pod-logs"),
        "clusterDNS": [GATEWAY],
        "clusterDomain": CLUSTER_DOMAIN,
    }


def kube_proxy_config(node: Node, ports: dict[str, int]) -> dict[str, Any]:
    """kube-proxy in iptables mode, touching no host-wide setting it need not: no conntrack
    table size, no route_localnet (localhostNodePorts), NodePorts on the bridge address only."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(node.root / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": SUBNET,
        "hostnameOverride": node.name,
        "metricsBindAddress": f"{HOST}:{ports['kube-proxy-metrics']}",
        "healthzBindAddress": f"{HOST}:{ports['kube-proxy-healthz']}",
        "conntrack": {"maxPerCore": 0},
        "iptables": {"localhostNodePorts": False},
        "nodePortAddresses": [f"{GATEWAY}/32"],
    }


def corefile(node: Node, ports: dict[str, int]) -> str:
    """CoreDNS on GATEWAY:53: the cluster's Services and pods, the rest forwarded."""
    kubeconfig = node.root / "coredns.kubeconfig"
    return f"""\
.:53 {{
    bind {GATEWAY}
    errors
    health {HOST}:{ports["coredns-health"]}
    ready {HOST}:{ports["coredns-ready"]}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} llm-optimizer-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
}}
"""


# CoreDNS's user (its client certificate's CN) may list and watch what the kubernetes plugin reads.
COREDNS_RBAC = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
            ],
        },
    ],
}

# Client certificates of the node's components: user and groups as the API server reads them.
CLIENTS = {
    "kubelet": "/O=system:nodes/CN=system:node:{name}",  # Node authorizer + NodeRestriction
    "kube-proxy": "/CN=system:kube-proxy",  # bootstrap RBAC: system:node-proxier
    "coredns": "/CN=system:coredns",  # COREDNS_RBAC
}


# --- checks ---------------------------------------------------------------------------------------


def preflight(node: Node) -> None:
    """Raise Exit naming the problem and the fix when this machine cannot run the node."""
    if os.geteuid() != 0:
        raise Exit("a real node needs root (bridge, iptables, cgroups, mounts); run as root", 1)
    if not (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").is_file():
        raise Exit(
            f"a real node needs cgroup v1 hierarchies under {CGROUP_ROOT} (this machine's "
            "layout); cgroup v2 alone is not supported yet: use the kwok nodes only",
            code=1,
        )
    if len(str(node.socket)) > SOCKET_MAX:
        raise Exit(
            f"containerd's socket {node.socket} would be longer than {SOCKET_MAX} characters; "
            "use a shorter --state-dir",
            code=1,
        )
    owner = LOCK.read_text().strip() if LOCK.is_file() else ""
    if owner and owner != str(node.cluster.root) and Node(Cluster(Path(owner))).record():
        raise Exit(
            f"a real node of the cluster in {owner} runs on this machine (one at a time: "
            f"kube-proxy's and CNI's iptables chains are machine-wide); stop it with "
            f"`uv run invoke cluster.down --state-dir {owner}`",
            code=1,
        )


def _links(runner: Runner) -> str:
    return runner.output(["ip", "-o", "addr", "show"])


# --- steps of up ----------------------------------------------------------------------------------


def _certificates(runner: Runner, node: Node, server: str) -> None:
    for client, subject in CLIENTS.items():
        name = f"node-{client}"
        k8s_cluster.client_cert(runner, node.cluster, name, subject.format(name=node.name))
        path = node.root / f"{client}.kubeconfig"
        k8s_cluster.write_kubeconfig(node.cluster, name, server, path)


def pause_image(runner: Runner, node: Node) -> None:
    """Build the sandbox image PAUSE_IMAGE: the pause program (static, by the catalogue's Go)
    in a ``FROM scratch`` image. Seconds; docker's build cache makes a rebuild a no-op."""
    from ops.core.provision import go_env  # provision imports rich; only the node needs it

    with tempfile.TemporaryDirectory(prefix=".pause-", dir=node.root) as tmp:
        context = Path(tmp)
        argv = ["go", "build", "-ldflags=-s -w -buildid=", "-o", str(context / "pause"), "."]
        runner.run(argv, env=go_env(), cwd=PAUSE_SOURCE, capture=True, hint="building pause")
        (context / "Dockerfile").write_text(
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        )
        runner.run(
            ["docker", "build", "--quiet", "--tag", PAUSE_IMAGE, str(context)],
            env={"DOCKER_BUILDKIT": "1"},
            capture=True,
        )
        (context / "pause").replace(node.root / "pause")  # also the mount namespace's holder


def import_images(runner: Runner, node: Node, images: Sequence[str]) -> None:
    """Copy ``images`` from Docker into the node's containerd (``k8s.io`` namespace), where the
    kubelet finds them: nothing is pulled."""
    for image in images:
        with tempfile.TemporaryDirectory(prefix=".image-", dir=node.root) as tmp:
            archive = Path(tmp) / "image.tar"
            runner.run(["docker", "save", "--output", str(archive), image], capture=True)
            runner.run([*ctr(node), "images", "import", str(archive)], capture=True)


def ctr(node: Node) -> list[str]:
    """``ctr`` against the node's containerd, in the CRI's namespace."""
    return ["ctr", "--address", str(node.socket), "--namespace", "k8s.io"]


def _make_cgroups(node: Node) -> None:
    """The node's cgroup root in every v1 hierarchy (cpuset's needs its cpus and mems)."""
    for hierarchy in _hierarchies():
        (hierarchy / node.cgroup.lstrip("/")).mkdir(exist_ok=True)
    cpuset = CGROUP_ROOT / "cpuset"
    for name in ("cpuset.cpus", "cpuset.mems"):
        value = (cpuset / name).read_text()
        (cpuset / node.cgroup.lstrip("/") / name).write_text(value)


def _hierarchies(*, unified: bool = False) -> list[Path]:
    """The mounted cgroup v1 hierarchies (not symlinks); with ``unified`` the v2 one of the
    hybrid layout too, where the kubelet makes its cgroups as well."""
    return [
        p
        for p in sorted(CGROUP_ROOT.iterdir())
        if p.is_dir() and not p.is_symlink() and (unified or p.name != "unified")
    ]


def _wait(what: str, check: Any, node: Node, log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        pid = node.record().get("pids", {}).get(log)
        if pid and _zombie(int(pid)):  # exited (unshare, nsenter: before their exec too)
            break
        time.sleep(0.2)
    path = node.cluster.logs / f"{log}.log"
    raise Exit(
        f"{what} did not become ready within {timeout:g} s; last lines of {path}:\n"
        f"{k8s_cluster.tail(path)}\nthen run: uv run invoke cluster.down",
        code=1,
    )


def up(
    runner: Runner,
    cluster: Cluster,
    *,
    images: Sequence[str] = (),
    timeout: float = 90.0,
    name: str = NAME,
) -> float:
    """Join one real node to the running ``cluster`` and import ``images``; the seconds it took.

    The kwok nodes are cordoned: new pods land on the real node. A no-op when it runs already
    (``images`` are imported all the same)."""
    started = time.monotonic()
    node = Node(cluster, name)
    for tool in (*HOST_TOOLS, *NODE_TOOLS, "docker", "go", "kubectl"):
        tools.require(tool)
    if runner.dry_run:
        print(
            f"[dry-run] join {name} to {cluster.root}: bridge {node.bridge} {GATEWAY}/{PREFIX}, "
            f"containerd, kubelet, kube-proxy, CoreDNS; import {PAUSE_IMAGE}, {', '.join(images)}"
        )
        return 0.0
    if running(node) == set(PROCESSES) and node_ready(runner, node):
        print(f"the real node {name} of {cluster.root} is already up")
        import_images(runner, node, images)
        return time.monotonic() - started
    if not k8s_cluster.apiserver_ready(cluster):
        raise Exit(f"no cluster runs in {cluster.root}; run: uv run invoke cluster.up", code=1)
    preflight(node)
    if node.record():
        print(f"a stopped or partial real node is recorded in {node.root}: removing it first")
        down(runner, cluster)
    try:
        _up(runner, node, images, timeout)
    except BaseException:
        print(f"the real node did not start; logs: {cluster.logs}; removing it", flush=True)
        with contextlib.suppress(Exception):
            down(runner, cluster)
        raise
    return time.monotonic() - started


def _up(runner: Runner, node: Node, images: Sequence[str], timeout: float) -> None:
    cluster = node.cluster
    if f" {GATEWAY}/" in _links(runner):
        raise Exit(
            f"{GATEWAY} is already on an interface (`ip -o addr show to {GATEWAY}`): another "
            "real node or a leftover; take it down first",
            code=1,
        )
    node.root.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "name": node.name,
        "bridge": node.bridge,
        "cgroup": node.cgroup,
        "network": node.network,
        "made": [str(d) for d in FIXED_DIRS if not d.exists()],  # removed by down when empty
        "pids": {},
    }
    node.save(record)
    LOCK.write_text(f"{cluster.root}\n")
    server = str(cluster.record()["server"])
    _certificates(runner, node, server)
    pause_image(runner, node)
    runner.run(["ip", "link", "add", node.bridge, "type", "bridge"])
    runner.run(["ip", "addr", "add", f"{GATEWAY}/{PREFIX}", "dev", node.bridge])
    runner.run(["ip", "link", "set", node.bridge, "up"])
    names = ("kubelet", "kubelet-healthz", "kube-proxy-metrics", "kube-proxy-healthz")
    ports = {n: free_port(HOST) for n in (*names, "coredns-health", "coredns-ready")}
    record["ports"] = ports
    node.save(record)
    for directory in (node.cni_bin, node.cni_conf, node.root / "containerd", node.root / "sysctl"):
        directory.mkdir(parents=True, exist_ok=True)
    for plugin in tools.CNI_PLUGINS:
        (node.cni_bin / plugin).symlink_to(tools.require(f"cni-{plugin}"))
    (node.cni_conf / "10-node.conflist").write_text(json.dumps(cni_config(node), indent=1))
    (node.root / "containerd" / "config.toml").write_text(containerd_config(node))
    (node.root / "kubelet.json").write_text(json.dumps(kubelet_config(node, ports), indent=1))
    (node.root / "kube-proxy.json").write_text(json.dumps(kube_proxy_config(node, ports)))
    (node.root / "Corefile").write_text(corefile(node, ports))
    _make_cgroups(node)

    def launch(name: str, argv: Sequence[str]) -> int:
        pid = k8s_cluster.start_daemon(cluster, name, argv)
        record["pids"][name] = pid
        node.save(record)
        return pid

    # The mount namespace: held by a pause process, entered by containerd and the kubelet.
    unshare = str(tools.require("unshare"))
    holder = launch(
        "node-namespace",
        [unshare, "--mount", "--propagation", "private", "--", str(node.root / "pause")],
    )
    namespace = f"/proc/{holder}/ns/mnt"
    own = os.readlink("/proc/self/ns/mnt")

    def entered() -> bool:
        with contextlib.suppress(OSError):
            return k8s_cluster.is_running(holder, "pause") and os.readlink(namespace) != own
        return False

    _wait("the node's mount namespace", entered, node, "node-namespace", timeout)
    enter = [str(tools.require("nsenter")), f"--mount={namespace}", "--"]
    for sysctl in SYSCTLS:
        shadow = node.root / "sysctl" / sysctl.replace("/", ".")
        shadow.write_text(Path("/proc/sys", sysctl).read_text())
        runner.run(
            [
                "nsenter",
                f"--mount={namespace}",
                "--",
                "mount",
                "--bind",
                shadow,
                f"/proc/sys/{sysctl}",
            ]
        )
    config = node.root / "containerd" / "config.toml"
    launch("containerd", [*enter, str(tools.require("containerd")), "--config", str(config)])
    quiet = Runner(ctx=runner.ctx, echo=False)

    def containerd_ready() -> bool:
        if not node.socket.is_socket():
            return False
        result = quiet.run([*ctr(node), "version"], check=False, capture=True)
        return result is not None and result.exited == 0

    _wait("containerd", containerd_ready, node, "containerd", timeout)
    import_images(runner, node, [PAUSE_IMAGE, *images])
    launch(
        "kubelet",
        [
            *enter,
            str(tools.require("kubelet")),
            f"--config={node.root / 'kubelet.json'}",
            f"--kubeconfig={node.root / 'kubelet.kubeconfig'}",
            f"--root-dir={node.root / 'kubelet'}",
            f"--cert-dir={node.root / 'kubelet-pki'}",
            f"--hostname-override={node.name}",
            f"--node-ip={GATEWAY}",
        ],
    )
    _wait(f"node {node.name}", lambda: node_ready(quiet, node), node, "kubelet", timeout)
    kubectl = ["kubectl", f"--kubeconfig={cluster.kubeconfig}"]
    simulated = runner.output([*kubectl, "get", "nodes", "-l", "type=kwok", "-o", "name"]).split()
    if simulated:
        runner.run([*kubectl, "cordon", *simulated], capture=True)
    launch(
        "kube-proxy",
        [str(tools.require("kube-proxy")), f"--config={node.root / 'kube-proxy.json'}"],
    )
    healthz = f"http://{HOST}:{ports['kube-proxy-healthz']}/healthz"
    _wait(
        "kube-proxy", lambda: k8s_cluster.http_get(healthz)[0] == 200, node, "kube-proxy", timeout
    )
    runner.run([*kubectl, "apply", "-f", "-"], stdin=json.dumps(COREDNS_RBAC), capture=True)
    launch("coredns", [str(tools.require("coredns")), "-conf", str(node.root / "Corefile")])
    ready = f"http://{HOST}:{ports['coredns-ready']}/ready"
    _wait("CoreDNS", lambda: k8s_cluster.http_get(ready)[0] == 200, node, "coredns", timeout)


def node_ready(runner: Runner, node: Node) -> bool:
    """True when the API server reports the node Ready."""
    kubectl = ["kubectl", f"--kubeconfig={node.cluster.kubeconfig}"]
    result = runner.run(
        [
            *kubectl,
            "get",
            "node",
            node.name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        ],
        check=False,
        capture=True,
    )
    return result is not None and result.exited == 0 and result.stdout.strip() == "True"


def status(cluster: Cluster) -> list[str]:
    """Print the real node's processes (nothing when there is none); returns the problems."""
    node = Node(cluster)
    pids = node.record().get("pids", {})
    if not pids:
        return []
    alive = running(node)
    for name in PROCESSES:
        state = f"pid {pids[name]}" if name in alive else "NOT RUNNING"
        print(f"{name:24} {state}  (real node {node.name}, bridge {node.bridge} {GATEWAY})")
    return [f"{name} of the real node is not running" for name in PROCESSES if name not in alive]


def running(node: Node) -> set[str]:
    """The recorded processes of the node that still run."""
    pids = node.record().get("pids", {})
    return {n for n, p in pids.items() if k8s_cluster.is_running(int(p), PROCESSES[n])}


# --- down -----------------------------------------------------------------------------------------


def down(runner: Runner, cluster: Cluster, *, timeout: float = 60.0) -> list[str]:
    """Remove the real node and everything it made on the machine; what was stopped."""
    node = Node(cluster)
    record = node.record()
    if not record:
        return []
    node = Node(cluster, str(record.get("name", NAME)))
    if runner.dry_run:
        print(f"[dry-run] stop the real node {node.name} of {cluster.root}; remove its traces")
        return []
    quiet = Runner(ctx=runner.ctx, echo=False)
    api = k8s_cluster.apiserver_ready(cluster)
    if "kubelet" in running(node) and api:
        _drain(runner, node, timeout)
    stopped: list[str] = []
    pids = record.get("pids", {})
    for name in ("coredns", "kube-proxy", "kubelet"):
        if name in running(node):
            k8s_cluster.stop_daemon(int(pids[name]), PROCESSES[name])
            stopped.append(name)
    if "containerd" in running(node):
        _remove_containers(quiet, node)
        k8s_cluster.stop_daemon(int(pids["containerd"]), "containerd")
        stopped.append("containerd")
    _kill_leftovers(node)
    if "node-namespace" in running(node):
        k8s_cluster.stop_daemon(int(pids["node-namespace"]), "pause")
        stopped.append("node-namespace")
    if LOCK.is_file() and LOCK.read_text().strip() == str(cluster.root):
        for command in ("iptables", "ip6tables"):
            remove_chains(quiet, command)
    links = quiet.output(["ip", "-o", "link", "show"])
    for veth in bridge_ports(links, node.bridge):  # pods never deleted (no CNI DEL): their
        runner.run(["ip", "link", "del", veth])  # namespace may outlive them (its sockets)
    if f": {node.bridge}:" in links:
        runner.run(["ip", "link", "del", node.bridge])
    _remove_cgroups(node)
    _remove_files(node, record)
    if api:  # a node that comes up again under this name must not stay cordoned
        kubectl = ["kubectl", f"--kubeconfig={cluster.kubeconfig}"]
        runner.run([*kubectl, "delete", "node", node.name, "--ignore-not-found"], capture=True)
    if LOCK.is_file() and LOCK.read_text().strip() == str(cluster.root):
        LOCK.unlink()
    shutil.rmtree(node.root, ignore_errors=True)  # no mount is left: its namespace is gone
    node.record_file.unlink(missing_ok=True)
    return stopped


def bridge_ports(links: str, bridge: str) -> list[str]:
    """The interfaces ``ip -o link show`` lists as ports of ``bridge`` (the pods' veths)."""
    ports = []
    for line in links.splitlines():
        fields = line.split()
        if len(fields) > 1 and f"master {bridge} " in line:
            ports.append(fields[1].rstrip(":").partition("@")[0])
    return ports


def _drain(runner: Runner, node: Node, timeout: float) -> None:
    """Delete the node's pods while the kubelet runs: their sandboxes get CNI DEL (veth, IP,
    per-pod iptables rules). Cordoned first, so their controllers' new pods do not land here."""
    kubectl = ["kubectl", f"--kubeconfig={node.cluster.kubeconfig}"]
    on_node = ["get", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={node.name}"]
    runner.run([*kubectl, "cordon", node.name], check=False, capture=True)
    runner.run(
        [
            *kubectl,
            "delete",
            "pods",
            "--all-namespaces",
            "--wait=false",
            f"--field-selector=spec.nodeName={node.name}",
        ],
        check=False,
        capture=True,
    )
    deadline = time.monotonic() + timeout
    quiet = Runner(ctx=runner.ctx, echo=False)
    while time.monotonic() < deadline:
        result = quiet.run([*kubectl, *on_node, "-o", "name"], check=False, capture=True)
        if result is None or result.exited != 0 or not result.stdout.strip():
            return
        time.sleep(0.5)
    print(f"pods still on {node.name} after {timeout:g} s: their containers are killed", flush=True)


def _remove_containers(runner: Runner, node: Node) -> None:
    """Kill and delete every task and container left in the node's containerd."""
    tasks = runner.run([*ctr(node), "tasks", "list", "--quiet"], check=False, capture=True)
    ids = tasks.stdout.split() if tasks is not None and tasks.exited == 0 else []
    for task in ids:
        runner.run(
            [*ctr(node), "tasks", "kill", "--signal", "SIGKILL", task], check=False, capture=True
        )
    for task in ids:
        runner.run([*ctr(node), "tasks", "delete", "--force", task], check=False, capture=True)
    listed = runner.run([*ctr(node), "containers", "list", "--quiet"], check=False, capture=True)
    for container in listed.stdout.split() if listed is not None and listed.exited == 0 else []:
        runner.run([*ctr(node), "containers", "delete", container], check=False, capture=True)


def _processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                found.append((int(entry.name), argv))
    return found


def _kill_leftovers(node: Node) -> None:
    """SIGKILL the node's shims (they outlive containerd) and any process left in its cgroups."""
    victims = {
        pid
        for pid, argv in _processes()
        if "containerd-shim" in argv[0] and str(node.socket) in argv
    }
    for hierarchy in _hierarchies(unified=True):
        base = hierarchy / node.cgroup.lstrip("/")
        for procs in base.rglob("cgroup.procs") if base.is_dir() else ():
            with contextlib.suppress(OSError, ValueError):
                victims |= {int(p) for p in procs.read_text().split()}
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victims and time.monotonic() < deadline:
        victims = {p for p in victims if Path(f"/proc/{p}").exists() and not _zombie(p)}
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    """True when ``pid`` has exited (gone, or a zombie not reaped yet)."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    return True


def chain_cleanup(listing: str) -> list[list[str]]:
    """iptables arguments (after ``-t TABLE``) that remove every CNI-/KUBE- chain of one table's
    ``iptables -S`` listing: the rules jumping to them, then their rules, then the chains."""
    rules = [shlex.split(line) for line in listing.splitlines() if line.strip()]
    chains = [r[1] for r in rules if r[:1] == ["-N"] and r[1].startswith(CHAIN_PREFIXES)]
    jumps = [
        ["-D", *r[1:]]
        for r in rules
        if r[:1] == ["-A"] and not r[1].startswith(CHAIN_PREFIXES) and _target(r) in chains
    ]
    return [*jumps, *(["-F", c] for c in chains), *(["-X", c] for c in chains)]


def _target(rule: list[str]) -> str:
    for flag in ("-j", "-g"):
        if flag in rule[:-1]:
            return rule[rule.index(flag) + 1]
    return ""


def remove_chains(runner: Runner, command: str) -> None:
    """Remove the CNI-/KUBE- chains (and the jumps to them) of every table of ``command``."""
    for table in TABLES:
        listing = runner.run([command, "-t", table, "-S"], check=False, capture=True)
        if listing is None or listing.exited != 0:
            continue
        for args in chain_cleanup(listing.stdout):
            runner.run([command, "-t", table, *args], check=False, capture=True)


def _remove_cgroups(node: Node) -> None:
    for hierarchy in _hierarchies(unified=True):
        base = hierarchy / node.cgroup.lstrip("/")
        if not base.is_dir():
            continue
        found = [base, *(p for p in base.rglob("*") if p.is_dir())]
        for directory in sorted(found, key=lambda p: len(p.parts), reverse=True):
            try:
                directory.rmdir()
            except OSError as error:
                raise Exit(
                    f"cannot remove the cgroup {directory} ({error.strerror}): a process of the "
                    f"node is left in it ({directory / 'cgroup.procs'}); kill it, then run "
                    "`uv run invoke cluster.down` again",
                    code=1,
                ) from error


def _remove_files(node: Node, record: dict[str, Any]) -> None:
    """What containerd and the kubelet write outside the state directory at fixed paths: the
    node's CNI results, network namespace files, log links and the kubelet's device-plugin
    socket; then the directories ``up`` found absent, once empty."""
    # containerd caches each pod's results of the node's network and of its loopback network
    # ("cni-loopback"); a pod deleted with the kubelet (CNI DEL) leaves neither.
    leftovers = [*CNI_CACHE.glob(f"{node.network}-*"), *CNI_CACHE.glob("cni-loopback-*")]
    leftovers += NETNS_DIR.glob("cni-*")
    leftovers.append(DEVICE_PLUGINS / "kubelet.sock")  # one kubelet per machine: ours
    logs = str(node.root / "pod-logs")
    if POD_LOG_LINKS.is_dir():
        leftovers += [
            link
            for link in POD_LOG_LINKS.iterdir()
            if link.is_symlink() and os.readlink(link).startswith(logs)
        ]
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for made in sorted(record.get("made", []), key=lambda d: len(Path(d).parts), reverse=True):
        directory = Path(made)
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
