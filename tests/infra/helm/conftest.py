"""Chart test fixtures: the real helm in an isolated home, scenarios rendered once, a cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.core.runner import Runner
from ops.k8s import cluster
from tests._support.cluster import CLUSTER_GO_TOOLS, Kube
from tests._support.helm import SCENARIOS, Helm, Objects, scenario_values
from tests._support.tools import require_tool


@pytest.fixture(scope="session")
def helm_cli(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(require_tool("helm"), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def rendered(helm_cli: Helm) -> dict[str, Objects]:
    """Every scenario (default + ci/*-values.yaml), rendered once per session."""
    return {name: helm_cli.render(scenario_values(name)) for name in SCENARIOS}


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """The local cluster (`invoke cluster.up --with-crds`), up once per session and always taken
    down. The Prometheus Operator's CRDs are generated (seconds, once per cache) before the
    clock starts: ``took`` is the start of the cluster and the install of the CRDs."""
    for name in (*CLUSTER_GO_TOOLS, "kubectl", "openssl"):
        require_tool(name)
    target = cluster.Cluster(tmp_path_factory.mktemp("cluster") / "state")
    runner = Runner(echo=False)
    cluster.operator_crds(runner)
    try:
        took = cluster.up(runner, target, timeout=90, crds=True)
        yield Kube(require_tool("kubectl"), target, took)
    finally:
        cluster.down(target)
