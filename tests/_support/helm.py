"""Chart test helpers: the real helm in an isolated home, scenarios, object lookups."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.core import project, tools
from ops.k8s import helm

Objects = list[dict[str, Any]]


class Helm:
    """Runs the real helm with HELM_*_HOME in a temporary directory."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            **helm.helm_home_env(home),
            "PATH": tools.search_path(),
            "HELM_NAMESPACE": helm.DEFAULT_NAMESPACE,
        }

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command built by ops.k8s.helm (argv[0] == "helm")."""
        assert argv[0] == "helm"
        result = subprocess.run(
            [str(self.binary), *argv[1:]], capture_output=True, text=True, env=self.env
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def render(self, values: helm.Values, chart: Path = helm.CHART_DIR) -> Objects:
        """helm template → the parsed objects (hooks and test pods included)."""
        out = self.run(helm.template(values, chart)).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def scenario_values(name: str) -> helm.Values:
    path = helm.scenarios()[name]
    return helm.Values(files=(path,) if path else ())


SCENARIOS = sorted(helm.scenarios())


def of_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Objects, kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def pod_specs(objects: Objects) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload and pod."""
    specs = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append((name, obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append((name, obj["spec"]))
    return specs


# What an operator stores in an existing Secret (docs/kubernetes.md, infra/kubernetes/values.yaml):
# a key as production accepts it (long and random; this one is published, so test-only).
OPERATOR_SECRET = {
    "api-keys": "op-test-3b8e1f0c9d2a4b6e8f1a3c5e7d9b read,write\n",
    "database-url": "postgresql+psycopg://llm:op-9d1e7b2c@db.example.internal:5432/llm",
    "redis-url": "redis://:op-4a8c6e1f@redis.example.internal:6379/0",
}


def service_command() -> Path:
    command = Path(sys.executable).parent / project.SERVICE_COMMAND
    assert command.is_file(), f"{command} missing: uv sync --group test installs the service"
    return command


def workload_container(
    objects: Objects, kind: str, container: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, container spec) of the one ``kind`` workload's ``container``."""
    pod = one(objects, kind)["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == container)


def secret_data(objects: Objects) -> dict[str, dict[str, str]]:
    """Each rendered Secret's decoded data, by name."""
    return {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in of_kind(objects, "Secret")
    }


def container_env(objects: Objects, container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps (envFrom), then its literal ``env`` values."""
    config_maps = {c["metadata"]["name"]: c["data"] for c in of_kind(objects, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def secret_file_mode(volume: dict[str, Any]) -> int:
    """The mode of a projected Secret volume's files (Kubernetes' default is 0644)."""
    mode: int = volume["projected"].get("defaultMode", 0o644)
    return mode


def materialise_env(
    objects: Objects, root: Path, kind: str = "Deployment", container: str = project.CHART_NAME
) -> dict[str, str]:
    """The service container's environment, with its volumes under ``root``.

    Secret files come from the rendered Secret, or OPERATOR_SECRET for an existing Secret, with
    the mode the kubelet gives them (the projected volume's ``defaultMode``).
    """
    pod, server = workload_container(objects, kind, container)
    secrets = secret_data(objects)
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    env = container_env(objects, server)
    for volume in pod["volumes"]:
        target = root / volume["name"]
        target.mkdir(parents=True)
        for source in volume.get("projected", {}).get("sources", []):
            data: dict[str, Any] = secrets.get(source["secret"]["name"], OPERATOR_SECRET)
            for item in source["secret"]["items"]:
                (target / item["path"]).write_text(data[item["key"]])
                (target / item["path"]).chmod(secret_file_mode(volume))
        # point every path setting at the materialised volume
        for key, value in env.items():
            if value == mounts[volume["name"]] or value.startswith(mounts[volume["name"]] + "/"):
                env[key] = str(target) + value[len(mounts[volume["name"]]) :]
    return env
