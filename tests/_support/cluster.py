"""The local cluster for tests (``ops.k8s.cluster``): kubectl against it, applies, waits."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.k8s import cluster

# The Go-built tools the local cluster (`invoke cluster.up --with-crds`) needs: the go_tools
# marker of its tests (tests/conftest.py).
CLUSTER_GO_TOOLS = (*cluster.COMPONENTS, "controller-gen")

Objects = list[dict[str, Any]]
PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}


@dataclass(frozen=True)
class Kube:
    """kubectl against one running local cluster."""

    kubectl: Path
    cluster: cluster.Cluster
    start_seconds: float

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl), f"--kubeconfig={self.cluster.kubeconfig}", *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=180)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Create ``name`` (PodSecurity restricted by default) and wait for its ServiceAccount."""
        labels = PSS_LABELS if labels is None else labels
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }
        self.run("apply", "--server-side", "-f", "-", stdin=json.dumps(body))
        self.run(
            "wait", "--for=create", f"--namespace={name}", "serviceaccount/default", "--timeout=60s"
        )
        return name

    def apply(self, objects: Objects, namespace: str, *, dry_run: bool = False) -> str:
        """Server-side apply ``objects`` into ``namespace``; returns kubectl's stderr (warnings)."""
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        args = ["apply", "--server-side", "--field-manager=tests", f"--namespace={namespace}"]
        if dry_run:
            args.append("--dry-run=server")
        return self.run(*args, "-f", "-", stdin=body).stderr

    def provide_volumes(self, objects: Objects, namespace: str) -> None:
        """A PersistentVolume for each StatefulSet claim, as an administrator without a dynamic
        provisioner makes them (this cluster has none): the claims bind, the pods schedule."""
        volumes = []
        for sts in by_kind(objects, ("StatefulSet",)):
            for claim in sts["spec"].get("volumeClaimTemplates", []):
                for ordinal in range(int(sts["spec"].get("replicas", 1))):
                    name = f"{namespace}-{claim['metadata']['name']}-{ordinal}"
                    spec = claim["spec"]
                    volumes.append(
                        {
                            "apiVersion": "v1",
                            "kind": "PersistentVolume",
                            "metadata": {"name": name},
                            "spec": {
                                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                                "accessModes": spec["accessModes"],
                                "storageClassName": spec.get("storageClassName", ""),
                                "hostPath": {"path": f"/nonexistent/{name}"},  # no kubelet
                                "claimRef": {
                                    "namespace": namespace,
                                    "name": f"{claim['metadata']['name']}-"
                                    f"{sts['metadata']['name']}-{ordinal}",
                                },
                            },
                        }
                    )
        if volumes:
            body = json.dumps({"apiVersion": "v1", "kind": "List", "items": volumes})
            self.run("apply", "--server-side", "-f", "-", stdin=body)

    def settle(self, objects: Objects, namespace: str, timeout: str = "90s") -> None:
        """Wait until every workload has rolled out and every Job completed."""
        for obj in objects:
            name = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
            if obj["kind"] in ("Deployment", "StatefulSet"):
                self.run(
                    "rollout", "status", f"--namespace={namespace}", name, f"--timeout={timeout}"
                )
            elif obj["kind"] == "Job":
                self.run(
                    "wait",
                    "--for=condition=Complete",
                    f"--namespace={namespace}",
                    name,
                    f"--timeout={timeout}",
                )

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """An operator's Secret (what docs/kubernetes.md tells them to create first)."""
        args = [f"--from-literal={key}={value}" for key, value in data.items()]
        self.run("create", "secret", "generic", name, f"--namespace={namespace}", *args)

    def events(self, namespace: str) -> Objects:
        """The namespace's events in the order they were written (etcd's revision order: this
        cluster's resourceVersions are etcd revisions, a total order of every write)."""
        items: Objects = self.json("get", "events", f"--namespace={namespace}")["items"]
        return sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def leftovers(self, namespace: str) -> set[str]:
        """``kind/name`` of everything in ``namespace`` (every listable namespaced resource)
        except events and what Kubernetes itself puts in each namespace."""
        names = self.run("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout
        kinds = [n for n in names.split() if n not in ("events", "events.events.k8s.io")]
        items = self.json("get", ",".join(kinds), f"--namespace={namespace}")["items"]
        found = {f"{o['kind']}/{o['metadata']['name']}" for o in items}
        return found - {"ConfigMap/kube-root-ca.crt", "ServiceAccount/default"}

    def add_nodes(self, names: Sequence[str], labels: dict[str, str], taint: str) -> None:
        """More kwok-simulated nodes (as cluster.up makes them), labelled and tainted
        ``KEY=VALUE:EFFECT`` so that only pods selecting and tolerating them land there."""
        key, _, rest = taint.partition("=")
        value, _, effect = rest.partition(":")
        nodes = json.loads(cluster.node_manifests(len(names)))
        for node, name in zip(nodes["items"], names, strict=True):
            node["metadata"]["name"] = name
            node["metadata"]["labels"].update({"kubernetes.io/hostname": name, **labels})
            node["spec"] = {"taints": [{"key": key, "value": value, "effect": effect}]}
        self.run("apply", "-f", "-", stdin=json.dumps(nodes))
        self.run("wait", "--for=condition=Ready", *(f"node/{n}" for n in names), "--timeout=60s")

    def pods(self, namespace: str, selector: str) -> Objects:
        items: Objects = self.json(
            "get", "pods", f"--namespace={namespace}", f"--selector={selector}"
        )["items"]
        return items

    def can_i(self, verb: str, resource: str, namespace: str, user: str) -> bool:
        result = self.run(
            "auth", "can-i", verb, resource, f"--namespace={namespace}", f"--as={user}", check=False
        )
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), f"can-i {verb} {resource}: {result.stdout}{result.stderr}"
        return answer == "yes"


def warnings(stderr: str) -> list[str]:
    """kubectl's ``Warning:`` lines (deprecations, PodSecurity, unknown fields, ...)."""
    return [line for line in stderr.splitlines() if line.startswith("Warning")]


def by_kind(objects: Objects, kinds: Sequence[str]) -> Objects:
    return [o for o in objects if o["kind"] in kinds]
