"""The end-to-end proof of `invoke new-service`, in a temporary copy of the repository.

One test, in the order a team would go: render a service, run the copy's own lint, typecheck
and tests sessions for it (nox posargs restrict them to the new service), the repository's
Dockerfile checks (which pick the new Dockerfile up through the image table), build the image
on the stand-in base with `invoke docker.build --image NAME`, run it hardened and wait until
Docker reports it healthy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from ops.core import workspace
from ops.core.project import ROOT
from ops.docker.engine import EngineStatus
from ops.scaffold import new_service
from tests._support.docker import base_image, docker_engine  # noqa: F401 (fixtures)
from tests._support.tools import require_tool

NAME = "proof-svc"
IMAGE = f"{NAME}:pytest"
# The outer session's environment must not leak into the copy's uv/nox runs.
LEAKY = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "NOX_CURRENT_SESSION", "PYTHONPATH")

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The working tree's files (tracked and untracked, minus ignored ones) copied to tmp."""
    git = require_tool("git")
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path / "repo"
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = copy / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return copy


def _run(argv: list[str], cwd: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY}
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output[-6000:]}"
    print(f"{' '.join(argv)}: {time.monotonic() - started:.1f} s")
    return output


@pytest.fixture
def cleanup_image() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    for container in client.containers.list(all=True, filters={"ancestor": IMAGE}):
        container.remove(force=True)
    if client.images.list(name=IMAGE):
        client.images.remove(IMAGE, force=True)
    client.close()


def test_a_new_service_passes_lint_typecheck_tests_and_runs_healthy(
    repo_copy: Path,
    base_image: str,  # noqa: F811 (fixture)
    docker_engine: EngineStatus,  # noqa: F811 (fixture)
    cleanup_image: docker.DockerClient,
) -> None:
    uv = str(require_tool("uv"))
    out = _run([uv, "run", "invoke", "new-service", "--name", NAME], repo_copy, 300)
    template_files = [
        p
        for p in (new_service.TEMPLATE_DIR / "{{cookiecutter.name}}").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert f"wrote {len(template_files)} files under services/{NAME}/" in out
    (service,) = [s for s in workspace.discover(repo_copy / "services") if s.dist == NAME]
    ports = f"httpPort: {service.http_port}\n      image:\n        repository: {NAME}\n"
    assert f"extraServices:\n    - {ports}      metricsPort: {service.metrics_port}" in out

    nox = [uv, "run", "nox", "--envdir", str(repo_copy.parent / "nox")]
    out = _run([*nox, "-s", "lint", "typecheck", "tests", "--", f"services/{NAME}"], repo_copy, 600)
    for session in ("lint", "typecheck", "tests"):
        assert f"* {session}: success" in out, out[-3000:]
    assert "6 passed" in out, out[-3000:]
    # The default sessions (no posargs) see it too: pytest's testpaths include services/*/tests.
    # The whole suite collected in one process: also proves the new package imports beside the
    # optimizer's (e.g. no metric registered twice in a shared registry).
    out = _run([*nox, "-s", "tests", "--", "--collect-only", "-q"], repo_copy, 300)
    assert f"services/{NAME}/tests/test_proof_svc_serve.py::test_sigterm_stops_cleanly" in out
    # The repository's Dockerfile conventions, which see the new Dockerfile via the image table.
    dockerfile_checks = "tests/infra/docker/test_dockerfiles.py"
    out = _run([*nox, "-s", "tests", "--", dockerfile_checks, "-k", "not checkov"], repo_copy, 300)
    assert "passed" in out, out[-3000:]
    assert " failed" not in out, out[-3000:]

    out = _run(
        [uv, "run", "invoke", "docker.build", "--image", NAME, "--tag", "pytest"], repo_copy, 600
    )
    assert f"built {IMAGE}" in out

    client = cleanup_image
    container = client.containers.run(
        IMAGE,
        detach=True,
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    deadline = time.monotonic() + 90
    status = "starting"
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status", "none")
        if status in ("healthy", "unhealthy") or container.status == "exited":
            break
        time.sleep(1)
    logs = container.logs().decode(errors="replace")
    assert status == "healthy", f"{status}:\n{logs}"
    assert container.attrs["Config"]["User"] == "1000:1000"
    metrics = container.exec_run(
        [
            "python3",
            "-c",
            "import urllib.request as u; "
            f"print(u.urlopen('http://127.0.0.1:{service.metrics_port}/metrics').read().decode())",
        ]
    )
    assert metrics.exit_code == 0, metrics.output
    assert b'http_requests_total{method="GET",route="/health/live",status="200"}' in metrics.output
