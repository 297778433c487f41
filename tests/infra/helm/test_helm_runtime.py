"""The chart's pod, played on this machine: the real service runs with exactly the rendered config.

No cluster can run here, so the Deployment's container is reproduced as a process: its
ConfigMap as the environment, its Secret as files where the *_FILE settings point, the
migrations Job's script first (production never migrates inside serve), then `serve` with the
container's args. The readiness/liveness paths answer, the `helm test` pods' own scripts pass
against it, and SIGTERM ends it with exit 0 within the pod's grace period.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.core import project
from ops.k8s import helm
from tests._support.helm import Helm, Objects, materialise_env, one, service_command
from tests._support.service import wait_ready
from tests._support.tools import free_port


@dataclass
class Pod:
    objects: Objects
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    http: int


@pytest.fixture(scope="module")
def pod(helm_cli: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    root = tmp_path_factory.mktemp("pod")
    http, grpc, metrics = free_port(), free_port(), free_port()
    values = helm.Values(
        sets={
            # the Services' DNS name becomes 127.0.0.1 so the helm test scripts reach this host
            "fullnameOverride": "127.0.0.1",
            "database.url": f"sqlite:///{root / 'state.db'}",
            "auth.apiKeys[0]": "runtime-test-key-0123456789abcdef0123 read,write,admin",
            "containerPorts.http": str(http),
            "containerPorts.grpc": str(grpc),
            "containerPorts.metrics": str(metrics),
            "service.ports.http": str(http),
            "service.ports.grpc": str(grpc),
            "migrations.waitForDatabaseSeconds": "30",
        }
    )
    objects = helm_cli.render(values)
    path = f"{service_command().parent}:/usr/bin:/bin"
    # the Job's script, with the Job's own config (its hook copies)
    job = one(objects, "Job", "-migrations")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    job_env = materialise_env(objects, root / "job", kind="Job", container="migrations")
    done = subprocess.run(
        migrate["command"],
        env={"PATH": path, "HOME": str(root), **job_env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    env = {"PATH": path, "HOME": str(root), **materialise_env(objects, root / "server")}
    assert env["LLM_OPTIMIZER_ENVIRONMENT"] == "production"
    env["LLM_OPTIMIZER_SERVER__HOST"] = "127.0.0.1"  # tests never bind 0.0.0.0 on this machine
    server = next(
        c
        for c in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        if c["name"] == project.CHART_NAME
    )
    log = root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(service_command()), *server["args"]],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    try:
        wait_ready(f"http://127.0.0.1:{http}", process, log, 90)
        yield Pod(objects, env, process, log, http)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _probe(pod: Pod, kind: str) -> dict[str, Any]:
    server = next(
        c
        for c in one(pod.objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        if c["name"] == project.CHART_NAME
    )
    return dict(server[f"{kind}Probe"]["httpGet"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["startup", "liveness", "readiness"])
def test_probes_answer_200(pod: Pod, kind: str) -> None:
    probe = _probe(pod, kind)
    assert probe["port"] == "http"
    response = httpx.get(f"http://127.0.0.1:{pod.http}{probe['path']}", timeout=5)
    assert response.status_code == 200, response.text


def _run_helm_test_pod(pod: Pod, kind: str) -> subprocess.CompletedProcess[str]:
    test = one(pod.objects, "Pod", f"-test-{kind}")
    (container,) = test["spec"]["containers"]
    command = [sys.executable, *container["command"][1:]]  # the image's python3 = this one
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_helm_test_http_pod_passes_against_the_service(pod: Pod) -> None:
    result = _run_helm_test_pod(pod, "http")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/health/ready 200" in result.stdout


@pytest.mark.slow
def test_helm_test_grpc_pod_passes_against_the_service(pod: Pod) -> None:
    result = _run_helm_test_pod(pod, "grpc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SERVING" in result.stdout


@pytest.mark.slow
def test_sigterm_ends_the_pod_within_its_grace_period(pod: Pod) -> None:
    grace = one(pod.objects, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    pod.process.send_signal(signal.SIGTERM)
    assert pod.process.wait(timeout=grace) == 0, pod.log.read_text()[-4000:]
