"""A throwaway local Kubernetes cluster from catalogued, Go-built tools (``invoke cluster.*``).

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (``ops.core.tools``: built by
``invoke setup``) run on 127.0.0.1 on ports picked free at start; kwok turns Node objects into
simulated nodes (pods become Running without containers). Everything lives in one state
directory outside the repository: its own CA and certificates (openssl), the service-account
key pair, kubeconfigs, logs, etcd's data and ``cluster.json`` (pids, ports). ``down`` stops every
process (SIGTERM, then SIGKILL), checks that the ports are free and removes the directory.

The API server runs as a default kubeadm cluster's does: RBAC and Node authorization, the
default admission plugins (PodSecurity among them) plus NodeRestriction, service-account
tokens signed by the cluster's key. What differs, and why: etcd speaks plain HTTP on loopback
without fsync (throwaway data); the ``kubernetes`` Service has no endpoints (a loopback address
may not be one); there is no kubelet (kwok's simulated nodes, so no container ever runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from ops.core import project, tools
from ops.core.runner import Runner

HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
# Default plugins are on anyway (PodSecurity, ServiceAccount, LimitRanger, ...); kubeadm adds:
ADMISSION_PLUGINS = ("NodeRestriction",)
NODE_ANNOTATION = "kwok.x-k8s.io/node"  # kwok manages the nodes annotated with it (=fake)
# kwok's own stages (from its pinned module): nodes become Ready and renew their lease; pods
# become Ready, Jobs' pods complete, deleted pods go.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def default_state_dir() -> Path:
    """``~/.local/state/llm-optimizer/cluster`` (``LLM_OPTIMIZER_OPS_STATE`` moves it)."""
    return project.state_dir() / "cluster"


@dataclass(frozen=True)
class Cluster:
    """Paths of one cluster's state directory."""

    root: Path
    nodes: int = 2

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The administrator's kubeconfig (``export KUBECONFIG=...``)."""
        return self.root / "kubeconfig"

    @property
    def record_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def record(self) -> dict[str, Any]:
        """What ``up`` wrote: pids, ports, versions ({} when there is no cluster)."""
        try:
            data = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def is_running(pid: int, binary: str) -> bool:
    """True when ``pid`` is alive and runs ``binary`` (a recycled pid is not ours).

    A process in the middle of its exec (state D, under load) can show an empty
    /proc/PID/cmdline: then its ``comm`` (the name, cut to 15 characters) decides."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        comm, _, rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
        state = rest.split()[0]
    except (OSError, IndexError):
        return False
    name = Path(cmdline).name if cmdline else comm.partition("(")[2]
    wanted = Path(binary).name
    return state != "Z" and (name == wanted or (not cmdline and name == wanted[:15]))


def _start(cluster: Cluster, name: str, argv: Sequence[str]) -> int:
    """Start one component detached (its own session), output to logs/<name>.log; its pid."""
    cluster.logs.mkdir(parents=True, exist_ok=True)
    print(f"+ {' '.join(argv)}", file=sys.stderr, flush=True)
    with (cluster.logs / f"{name}.log").open("ab") as log:
        # Not through Runner: a daemon must outlive this process, so it is spawned, not waited for.
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cluster.root,
            start_new_session=True,
        )
    return process.pid


def _stop(pid: int, binary: str, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``pid``; SIGKILL it if still alive after ``timeout``."""
    if not is_running(pid, binary):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our child (tests)
            if not is_running(pid, binary):
                return
            time.sleep(0.1)
    raise Exit(f"{binary} (pid {pid}) survived SIGKILL; stop it by hand: kill -9 {pid}", code=1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- certificates ---------------------------------------------------------------------------------

_OPENSSL_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"


def _cert(
    runner: Runner, pki: Path, name: str, subject: str, extensions: Sequence[str], ca: bool
) -> None:
    """An EC P-256 key and certificate: self-signed CA, or signed by pki/ca.*."""
    argv = ["openssl", "req", "-x509", "-config", str(pki / "openssl.cnf"), "-newkey", "ec"]
    argv += ["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "365"]
    argv += ["-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.crt")]
    argv += ["-subj", subject]
    if not ca:
        argv += ["-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key")]
    for extension in extensions:
        argv += ["-addext", extension]
    runner.run(argv, capture=True)


def make_pki(runner: Runner, cluster: Cluster) -> None:
    """The cluster's CA, serving and client certificates and service-account key pair."""
    pki = cluster.pki
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    ca_ext = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
    _cert(runner, pki, "ca", "/CN=llm-optimizer-local-ca", ca_ext, ca=True)
    leaf = ("basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature")
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append("kubernetes.default.svc.cluster.local")
    san = ",".join([f"IP:{HOST}", f"IP:{SERVICE_IP}", *(f"DNS:{n}" for n in names)])
    server = (*leaf, "extendedKeyUsage=serverAuth", f"subjectAltName={san}")
    _cert(runner, pki, "apiserver", "/CN=kube-apiserver", server, ca=False)
    client = (*leaf, "extendedKeyUsage=clientAuth")
    for name, subject in CLIENTS.items():
        _cert(runner, pki, name, subject, client, ca=False)
    sa_key = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    runner.run(["openssl", *sa_key, "-out", pki / "sa.key"], capture=True)
    runner.run(["openssl", "pkey", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub"])
    for key in pki.glob("*.key"):
        key.chmod(0o600)


# Client certificates: user and groups as the API server reads them (CN, O).
CLIENTS = {
    "admin": "/O=system:masters/CN=kubernetes-admin",
    "kube-controller-manager": "/CN=system:kube-controller-manager",
    "kube-scheduler": "/CN=system:kube-scheduler",
    "kwok": "/O=system:masters/CN=kwok",  # kwok writes node and pod status of every namespace
}


def write_kubeconfig(cluster: Cluster, client: str, server: str, path: Path) -> None:
    """A kubeconfig for ``client``'s certificate (context ``llm-optimizer-local``)."""
    pki = cluster.pki
    name = "llm-optimizer-local"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate": str(pki / f"{client}.crt"),
                    "client-key": str(pki / f"{client}.key"),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": client}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# --- the components -------------------------------------------------------------------------------


def _commands(cluster: Cluster, ports: dict[str, int], stages: Path) -> dict[str, list[str]]:
    pki, root = cluster.pki, cluster.root
    etcd_url = f"http://{HOST}:{ports['etcd']}"
    peer_url = f"http://{HOST}:{ports['etcd-peer']}"

    def kube_auth(name: str) -> list[str]:
        return [
            f"--kubeconfig={root / f'{name}.kubeconfig'}",
            f"--authentication-kubeconfig={root / f'{name}.kubeconfig'}",
            f"--authorization-kubeconfig={root / f'{name}.kubeconfig'}",
            f"--bind-address={HOST}",
            f"--secure-port={ports[name]}",
            "--leader-elect=false",
        ]

    path = {name: str(tools.require(name)) for name in COMPONENTS}
    return {
        "etcd": [
            path["etcd"],
            "--name=local",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--unsafe-no-fsync",  # throwaway data: no fsync makes every write fast
            "--log-level=warn",
        ],
        "kube-apiserver": [
            path["kube-apiserver"],
            f"--etcd-servers={etcd_url}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={ports['kube-apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
            "--allow-privileged=true",  # as kubeadm; PodSecurity labels decide per namespace
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--endpoint-reconciler-type=none",  # 127.0.0.1 may not be an endpoint address
        ],
        "kube-controller-manager": [
            path["kube-controller-manager"],
            *kube_auth("kube-controller-manager"),
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--controllers=*,bootstrapsigner,tokencleaner",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ],
        "kube-scheduler": [path["kube-scheduler"], *kube_auth("kube-scheduler")],
        "kwok": [
            path["kwok"],
            f"--kubeconfig={root / 'kwok.kubeconfig'}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
        ],
    }


def kwok_stages(cluster: Cluster) -> Path:
    """One config file with kwok's own stages, read from its pinned module in the Go cache."""
    from ops.core.provision import go_dir  # provision imports rich; only cluster commands need it

    build = tools.KWOK
    module = go_dir() / "mod" / f"{build.module}@{build.version}" / "kustomize" / "stage"
    missing = [s for s in KWOK_STAGES if not (module / s).is_file()]
    if missing:
        raise Exit(
            f"kwok's stage files are not in the Go module cache ({module}); "
            "run: uv run invoke setup --only kwok",
            code=1,
        )
    path = cluster.root / "kwok-stages.yaml"
    path.write_text("\n---\n".join((module / s).read_text() for s in KWOK_STAGES))
    return path


def node_manifests(count: int) -> str:
    """``count`` kwok-managed Node objects (JSON list), as kwok's own examples declare them."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{i}",
                "annotations": {NODE_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": f"kwok-node-{i}",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": f"local-{i % 2}",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        }
        for i in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


# --- readiness ------------------------------------------------------------------------------------


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return int(response.status), response.read().decode()
    except OSError as error:
        code = getattr(error, "code", 0)
        return (int(code) if isinstance(code, int) else 0), str(error)


def _admin_tls(cluster: Cluster) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    context.load_cert_chain(cluster.pki / "admin.crt", cluster.pki / "admin.key")
    return context


def apiserver_ready(cluster: Cluster) -> bool:
    """True when the recorded API server answers /readyz with 200."""
    port = cluster.record().get("ports", {}).get("kube-apiserver")
    if not port or not (cluster.pki / "admin.crt").is_file():
        return False
    return _get(f"https://{HOST}:{port}/readyz", _admin_tls(cluster))[0] == 200


def _wait(what: str, check: Any, cluster: Cluster, log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    record = cluster.record()
    while time.monotonic() < deadline:
        if check():
            return
        pid = record.get("pids", {}).get(log)
        if pid and not is_running(int(pid), log):
            break
        time.sleep(0.2)
    raise Exit(
        f"{what} did not become ready within {timeout:g} s; last lines of "
        f"{cluster.logs / f'{log}.log'}:\n{_tail(cluster.logs / f'{log}.log')}\n"
        "then run: uv run invoke cluster.down",
        code=1,
    )


# --- up, status, down -----------------------------------------------------------------------------


def running(cluster: Cluster) -> dict[str, int]:
    """The recorded components that are still running (name → pid)."""
    pids = cluster.record().get("pids", {})
    return {n: int(p) for n, p in pids.items() if is_running(int(p), n)}


def up(runner: Runner, cluster: Cluster, *, timeout: float = 60.0) -> float:
    """Start the cluster (a no-op when it is up and ready); returns the seconds it took."""
    started = time.monotonic()
    if len(running(cluster)) == len(COMPONENTS) and apiserver_ready(cluster):
        print(f"the cluster in {cluster.root} is already up")
        return time.monotonic() - started
    if cluster.root.exists():
        print(f"a stopped or partial cluster is in {cluster.root}: removing it first")
        down(cluster)
    for name in COMPONENTS:
        tools.require(name)
    if runner.dry_run:
        print(f"[dry-run] create {cluster.root}: CA, certificates, kubeconfigs; start {COMPONENTS}")
        return 0.0
    cluster.root.mkdir(parents=True, exist_ok=True)
    try:
        _up(runner, cluster, timeout)
    except BaseException:
        print(f"the cluster did not start; logs: {cluster.logs}", file=sys.stderr)
        raise
    return time.monotonic() - started


def _up(runner: Runner, cluster: Cluster, timeout: float) -> None:
    make_pki(runner, cluster)
    names = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ports = {name: free_port() for name in names}
    server = f"https://{HOST}:{ports['kube-apiserver']}"
    write_kubeconfig(cluster, "admin", server, cluster.kubeconfig)
    for client in ("kube-controller-manager", "kube-scheduler", "kwok"):
        write_kubeconfig(cluster, client, server, cluster.root / f"{client}.kubeconfig")
    commands = _commands(cluster, ports, kwok_stages(cluster))
    record: dict[str, Any] = {"server": server, "ports": ports, "pids": {}}

    def launch(name: str) -> None:
        record["pids"][name] = _start(cluster, name, commands[name])
        cluster.record_file.write_text(json.dumps(record, indent=2) + "\n")

    launch("etcd")
    etcd_health = f"http://{HOST}:{ports['etcd']}/health"
    _wait("etcd", lambda: _get(etcd_health)[0] == 200, cluster, "etcd", timeout)
    launch("kube-apiserver")
    _wait("kube-apiserver", lambda: apiserver_ready(cluster), cluster, "kube-apiserver", timeout)
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        launch(name)
    kubectl = ["kubectl", f"--kubeconfig={cluster.kubeconfig}"]
    runner.run([*kubectl, "apply", "-f", "-"], stdin=node_manifests(cluster.nodes), capture=True)
    wait = [*kubectl, "wait", "--for=condition=Ready", "node", "--all", f"--timeout={timeout:g}s"]
    runner.run(wait, capture=True, hint=f"kwok's log: {cluster.logs / 'kwok.log'}")
    # Pods need their namespace's `default` ServiceAccount: the controller-manager makes it.
    sa = ["get", "serviceaccount", "default", "--namespace=default", "-o", "name"]
    deadline = time.monotonic() + timeout
    quiet = Runner(ctx=runner.ctx, echo=False)
    while quiet.run([*kubectl, *sa], check=False, capture=True).exited != 0:  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise Exit(f"no default ServiceAccount; see {cluster.logs}", code=1)
        time.sleep(0.3)
    missing = [name for name in COMPONENTS if name not in running(cluster)]
    if missing:
        log = cluster.logs / f"{missing[0]}.log"
        raise Exit(f"{', '.join(missing)} exited; {log}:\n{_tail(log)}", code=1)


def server_version(runner: Runner, cluster: Cluster) -> str:
    """The API server's gitVersion (raises CommandFailedError when it does not answer)."""
    out = runner.output(["kubectl", f"--kubeconfig={cluster.kubeconfig}", "version", "-o=json"])
    return str(json.loads(out)["serverVersion"]["gitVersion"])


def status(runner: Runner, cluster: Cluster) -> list[str]:
    """Print the cluster's state; returns the problems (empty when it is ready)."""
    record = cluster.record()
    if not record:
        return [f"no cluster in {cluster.root}; run: uv run invoke cluster.up"]
    alive = running(cluster)
    problems = [f"{n} is not running" for n in COMPONENTS if n not in alive]
    for name in COMPONENTS:
        state = f"pid {alive[name]}" if name in alive else "NOT RUNNING"
        port = record.get("ports", {}).get(name)
        print(f"{name:24} {state}" + (f"  {HOST}:{port}" if port else ""))
    if not apiserver_ready(cluster):
        return [*problems, "the API server does not answer /readyz"]
    print(f"server {record['server']}  version {server_version(runner, cluster)}")
    nodes = runner.output(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "get", "nodes", "-o", "json"]
    )
    for node in json.loads(nodes)["items"]:
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        ready = conditions.get("Ready") == "True"
        print(f"node {node['metadata']['name']:20} {'Ready' if ready else 'NotReady'}")
        if not ready:
            problems.append(f"node {node['metadata']['name']} is not Ready")
    return problems


def down(cluster: Cluster) -> list[str]:
    """Stop every process and remove the state directory; returns what was stopped."""
    record = cluster.record()
    stopped = []
    for name in reversed(COMPONENTS):
        pid = record.get("pids", {}).get(name)
        if pid and is_running(int(pid), name):
            print(f"stopping {name} (pid {pid})", flush=True)
            _stop(int(pid), name)
            stopped.append(name)
    ports = [int(p) for p in record.get("ports", {}).values()]
    deadline = time.monotonic() + 10
    while (busy := [p for p in ports if port_in_use(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    if busy:
        raise Exit(f"ports {busy} on {HOST} are still in use; find them with `ss -ltnp`", code=1)
    if cluster.root.exists():
        import shutil

        shutil.rmtree(cluster.root)
    return stopped


def next_steps(cluster: Cluster) -> str:
    """The commands a developer runs next."""
    return f"export KUBECONFIG={cluster.kubeconfig}\nkubectl get nodes"
