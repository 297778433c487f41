"""`--target kubernetes` operations, played in the chart's pod reproduced as containers.

No API server runs here, so ``kubectl exec`` cannot. What it would run can: the Deployment's
container is started from the service image with exactly the rendered pod's settings (its
ConfigMap as the environment, its Secret as read-only files at their mount paths, emptyDir
volumes as fresh group-writable directories, the pod's UID/GID 10001 (which the image's
/etc/passwd does not know) with the fsGroup, a read-only root, no capabilities), against a real
PostgreSQL on this host; the migrations Job's
command runs first in a container of its own. Then the command lines of ``invoke db.* --target
kubernetes`` (``ops.deploy.service_cli``), from ``--`` on, are ``docker exec``-ed into it: back up,
verify, restore under the running service, health.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker.models.containers import Container
from invoke.config import Config
from invoke.context import Context

from ops.core import project
from ops.deploy import service_cli
from ops.docker import commands
from ops.docker.images import BuildResult
from ops.k8s import helm
from tests._support import docker as containers
from tests._support.docker import (  # noqa: F401 - pytest finds fixtures by name
    base_image,
    docker_engine,
    service_image,
)
from tests._support.helm import (
    Helm,
    Objects,
    container_env,
    secret_data,
    secret_file_mode,
    workload_container,
)
from tests._support.postgres import PostgresServer
from tests._support.service_fixtures import postgres  # noqa: F401 - a fixture
from tests._support.tools import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "pod-test-key-not-a-secret-0123456789abcdef"  # production: >= 32 characters


def _container_kwargs(
    objects: Objects, root: Path, kind: str, container: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the container spec, ``containers.run`` keyword arguments reproducing it in its pod)."""
    pod, spec = workload_container(objects, kind, container)
    security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
    secrets = secret_data(objects)
    env = container_env(objects, spec)
    mounts = {m["name"]: m for m in spec.get("volumeMounts", [])}
    volumes: dict[str, dict[str, str]] = {}
    group = security["fsGroup"]
    for volume in pod.get("volumes", []):
        mount = mounts.get(volume["name"])
        if mount is None:
            continue
        host = root / kind / volume["name"]
        host.mkdir(parents=True)
        if "emptyDir" in volume:
            # A fresh directory, 0777 plus setgid and group-owned by the fsGroup, as the kubelet
            # makes an emptyDir (a tmpfs here would copy up the image directory's 0750 instead).
            host.chmod(0o2777)
            if os.geteuid() == 0:
                os.chown(host, -1, group)
            volumes[str(host)] = {"bind": mount["mountPath"], "mode": "rw"}
            continue
        for source in volume["projected"]["sources"]:
            data = secrets[source["secret"]["name"]]
            for item in source["secret"]["items"]:
                path = host / item["path"]
                path.write_text(data[item["key"]])
                path.chmod(secret_file_mode(volume))
                if os.geteuid() == 0:  # the kubelet gives the files to the fsGroup
                    os.chown(path, -1, group)
        volumes[str(host)] = {"bind": mount["mountPath"], "mode": "ro"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    kwargs: dict[str, Any] = {
        "environment": env,
        "user": f"{security['runAsUser']}:{security['runAsGroup']}",
        "group_add": [str(group)],
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "volumes": volumes,
        "network_mode": "host",  # the pod's network is this host's loopback (PostgreSQL, probes)
    }
    return spec, kwargs


@dataclass
class PodContainer:
    container: Container
    http_url: str

    def kubectl_exec(self, *args: str) -> tuple[int, str]:
        """What ``invoke db.* --target kubernetes`` runs: its argv from ``--`` on, exec-ed."""
        argv = service_cli.invocation(Context(Config()), "kubernetes", args).argv
        assert argv[0] == "kubectl"
        assert f"deploy/{helm.RELEASE}" in argv
        command = argv[argv.index("--") + 1 :]
        code, output = self.container.exec_run(command, demux=False)
        return int(code), output.decode(errors="replace")


@pytest.fixture(scope="module")
def pod_container(
    service_image: BuildResult,  # noqa: F811 - the fixture imported above
    postgres: PostgresServer,  # noqa: F811 - the fixture imported above
    helm_cli: Helm,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PodContainer]:
    root = tmp_path_factory.mktemp("pod-container")
    database = postgres.create_database("test_pod")
    http, grpc, metrics = free_port(), free_port(), free_port()
    objects = helm_cli.render(
        helm.Values(
            sets={
                "database.url": database,
                "auth.apiKeys[0]": f"{API_KEY} read,write,admin",
                "containerPorts.http": str(http),
                "containerPorts.grpc": str(grpc),
                "containerPorts.metrics": str(metrics),
            }
        )
    )
    image = service_image.refs[0]
    job, job_kwargs = _container_kwargs(objects, root, "Job", "migrations")
    code, output = containers.run_once(image, job["command"][2:], entrypoint=job["command"][:2],
                                       **job_kwargs)  # fmt: skip
    assert code == 0, output
    server, kwargs = _container_kwargs(objects, root, "Deployment", project.CHART_NAME)
    kwargs["environment"]["LLM_OPTIMIZER_SERVER__HOST"] = "127.0.0.1"  # never 0.0.0.0 here
    container = containers.run_detached(
        image, command=server.get("args"), name=f"llmo-pod-{uuid.uuid4().hex[:8]}", **kwargs
    )
    try:
        containers.wait_healthy(container, timeout=120)
        yield PodContainer(container, f"http://127.0.0.1:{http}")
    finally:
        commands.remove(container)
        postgres.drop_database(database)


def _report(http: httpx.Client, workload: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/workloads/{workload}/report")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_backup_verify_restore_and_health_through_kubectl_exec(pod_container: PodContainer) -> None:
    pod = pod_container
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=pod.http_url, headers=headers, timeout=10) as http:
        arms = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]
        assert http.post("/api/v1/workloads", json={"name": "pod", "arms": arms}).status_code == 201
        for quality in (0.3, 0.7):
            decision = http.post("/api/v1/workloads/pod/decide").json()
            feedback = {"decision_id": decision["decision_id"], "quality": quality,
                        "cost_usd": 0.001, "latency_ms": 90}  # fmt: skip
            assert http.post("/api/v1/feedback", json=feedback).status_code == 202
        before = _report(http, "pod")

        code, output = pod.kubectl_exec("backup", "create", "--json")
        assert code == 0, output
        archive = json.loads(output[output.index("{") :])["path"]
        assert archive.startswith("/var/lib/llm-optimizer/backups/"), archive  # the emptyDir
        code, output = pod.kubectl_exec("backup", "verify", archive)
        assert code == 0, output

        assert http.post("/api/v1/workloads", json={"name": "later", "arms": arms}).status_code == (
            201
        )
        code, output = pod.kubectl_exec("backup", "restore", archive)
        assert code != 0, "a restore over data without --force must refuse"
        assert "--force" in output, output
        code, output = pod.kubectl_exec("backup", "restore", archive, "--force")
        assert code == 0, output
        deadline = time.monotonic() + 30
        while http.get("/api/v1/workloads/later/report").status_code != 404:
            assert time.monotonic() < deadline, "the restored database never showed"
            time.sleep(0.5)
        assert _report(http, "pod") == before

    code, output = pod.kubectl_exec("health")
    assert code == 0, output
    code, output = pod.kubectl_exec("db", "current")
    assert code == 0, output
    assert "(head)" in output
