"""Tasks run for real where the tool exists here: build (uv build), info, version."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ops.core import project
from tests._support.tools import require_tool


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_build_writes_an_sdist_and_a_wheel_per_service_package(tmp_path: Path) -> None:
    require_tool("uv")
    out = tmp_path / "dist"
    result = invoke("build", "--out", str(out), "--clear")
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name for p in out.iterdir())
    version = project.version()
    for dist in ("llm_optimizer_service", "llm_optimizer_cli"):
        assert f"{dist}-{version}.tar.gz" in names
        wheel = out / f"{dist}-{version}-py3-none-any.whl"
        assert wheel.exists(), names
        with zipfile.ZipFile(wheel) as archive:
            assert any(n.startswith(f"{dist}/") for n in archive.namelist())


def test_info_shows_versions_sha_targets_and_tools() -> None:
    require_tool("git")
    result = invoke("info")
    assert result.returncode == 0, result.stdout + result.stderr
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=project.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out = result.stdout
    assert f"{project.PROJECT} {project.version()}" in out
    assert f"git sha      {sha}" in out
    assert "local       this machine" in out
    assert "deploy targets" in out
    assert "tools (invoke doctor):" in out


def test_version_prints_the_single_version() -> None:
    result = invoke("version")
    assert result.stdout.strip() == project.version()


@pytest.mark.slow
def test_watch_runs_pytest_at_once_through_watchfiles(tmp_path: Path) -> None:
    """The real watcher starts and runs the tests once; a file change would re-run them."""
    import os
    import signal
    import time

    require_tool("uv")
    sample = tmp_path / "test_sample.py"
    sample.write_text("def test_ok() -> None:\n    assert True\n")
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "invoke", "test.watch", "--path", str(sample)],
            cwd=project.ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "1 passed" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
        assert "1 passed" in log.read_text(), log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
