"""Chart test helpers: the real helm in an isolated home, scenarios, object lookups."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops import helm, tools

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
        """Run a command built by ops.helm (argv[0] == "helm")."""
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
