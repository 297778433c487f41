"""Real release builds: every artefact, checksums that verify, reproducibility, a pex that runs.

The full `invoke release --dry-run` runs on a clean clone for the platforms this machine can
execute (linux-x86_64) plus the universal client pex; `nox -s build` covers the rest of the
platform matrix with the same code (ops.build.artifacts).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ops.build import artifacts
from ops.core import project
from ops.core.runner import Runner
from ops.docker import engine
from tests._support.tools import free_port
from tests.ops.release.conftest import clean_env, git

VERSION = project.version()
SERVICE_PEX = f"{project.SERVICE_DIST}-{VERSION}-linux-x86_64.pex"
CLI_UNIVERSAL_PEX = f"{project.CLI_DIST}-{VERSION}-universal.pex"


def test_dry_run_release_writes_every_artefact(released: Path) -> None:
    names = {p.relative_to(released).as_posix() for p in released.rglob("*") if p.is_file()}
    for dist in (project.SERVICE_DIST, project.CLI_DIST):
        stem = dist.replace("-", "_")
        assert f"packages/{stem}-{VERSION}-py3-none-any.whl" in names
        assert f"packages/{stem}-{VERSION}.tar.gz" in names
    assert {
        SERVICE_PEX,
        CLI_UNIVERSAL_PEX,
        f"{project.CLI_DIST}-{VERSION}-linux-x86_64.pex",
        f"{project.CLI_DIST}-{VERSION}-linux-x86_64-musl.pex",
    } <= names
    assert f"{project.SERVICE_DIST}-{VERSION}-linux-x86_64-musl.pex" not in names
    assert f"{project.CHART_NAME}-{VERSION}.tgz" in names
    assert {"sbom.cdx.json", "RELEASE_NOTES.md", "SHA256SUMS"} <= names
    if engine.status().answering:
        for image in (project.SERVICE_IMAGE, project.CLI_IMAGE):
            assert f"{image}-{VERSION}.tar" in names
            assert f"{image}-{VERSION}.cdx.json" in names  # its SBOM (syft), in SHA256SUMS too


def test_dry_run_release_does_not_tag(released: Path) -> None:
    assert git(released.parent.parent, "tag", "--list") == ""


def test_sha256sums_verify(released: Path) -> None:
    listed = (released / "SHA256SUMS").read_text().splitlines()
    files = {p for p in released.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    assert len(listed) == len(files)
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"],
        cwd=released, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_sbom_and_notes_are_real(released: Path) -> None:
    sbom = json.loads((released / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    components = {c["name"].lower() for c in sbom["components"]}
    assert {"fastapi", "sqlalchemy", "httpx"} <= components
    notes = (released / "RELEASE_NOTES.md").read_text()
    assert f"LLM Auto Optimizer {VERSION}" in notes
    assert "Features" in notes


def test_service_pex_runs_version_and_serves_liveness(released: Path, tmp_path: Path) -> None:
    pex = released / SERVICE_PEX
    env = {**clean_env(), "PEX_ROOT": str(tmp_path / "pex-root")}
    version = subprocess.run(
        [str(pex), "version"], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    assert VERSION in version.stdout
    http, metrics, grpc = free_port(), free_port(), free_port()
    serve_env = {
        **env,
        "LLM_OPTIMIZER_DATA_DIR": str(tmp_path / "data"),
        "LLM_OPTIMIZER_SERVER__HOST": "127.0.0.1",
        "LLM_OPTIMIZER_SERVER__HTTP_PORT": str(http),
        "LLM_OPTIMIZER_SERVER__METRICS_PORT": str(metrics),
        "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(grpc),
    }
    process = subprocess.Popen([str(pex), "serve"], env=serve_env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{http}/health/live", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the pex exited before serving"
                assert time.monotonic() < deadline, "the pex did not serve /health/live in 120 s"
                time.sleep(0.5)
        assert response.status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_cli_universal_pex_runs_here(released: Path, tmp_path: Path) -> None:
    env = {**clean_env(), "PEX_ROOT": str(tmp_path / "pex-root")}
    result = subprocess.run(
        [sys.executable, str(released / CLI_UNIVERSAL_PEX), "--help"],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "workload" in result.stdout


def test_builds_are_reproducible(released: Path, tmp_path: Path) -> None:
    """Building again from the same commit gives identical sha256 sums (packages and a pex)."""
    runner = Runner(echo=False)
    clone_root = released.parent.parent
    again = tmp_path / "again"
    artifacts.build_packages(runner, again / "packages", clone_root)
    cli = next(p for p in artifacts.packages(clone_root) if p.dist == project.CLI_DIST)
    artifacts.build_pex(runner, cli, "linux-x86_64", again / "packages", again, tmp_path)
    rebuilt = sorted(p for p in again.rglob("*") if p.is_file())
    assert len(rebuilt) == 5  # 2 wheels, 2 sdists, 1 pex
    for path in rebuilt:
        relative = path.relative_to(again)
        assert artifacts.sha256(path) == artifacts.sha256(released / relative), relative
