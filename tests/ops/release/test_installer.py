"""scripts/install.sh: the one-line installer, run for real against a release served over HTTP.

A local `python -m http.server` (127.0.0.1, a port picked at run time) serves two copies of the
session's dry-run release: as built, and with one changed byte in the client pex. The installer
must install the first (its `version` runs) and refuse the second, installing nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops.build import artifacts
from ops.core import project
from tests._support.tools import free_port, require_tool, stop_process
from tests.ops.release.conftest import VERSION, clean_env

INSTALLER = project.ROOT / "scripts" / "install.sh"
CLI_PEX = f"{project.CLI_DIST}-{VERSION}-linux-x86_64.pex"


@pytest.fixture(scope="module")
def server(released: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of an HTTP server with good/ (the release) and tampered/ (a changed byte)."""
    root = tmp_path_factory.mktemp("served")
    for name in ("good", "tampered"):
        copy = Path(shutil.copytree(released, root / name, copy_function=os.link))
        (copy / "install.sh").unlink(missing_ok=True)  # this checkout's installer, not HEAD's
        shutil.copy2(INSTALLER, copy / "install.sh")
    pex = root / "tampered" / CLI_PEX
    data = bytearray(pex.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pex.unlink()  # never write through the hard link into the shared release
    pex.write_bytes(bytes(data))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/good/SHA256SUMS", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, "the HTTP server exited"
                assert time.monotonic() < deadline, "the HTTP server did not answer in 30 s"
                time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


def install(
    tmp_path: Path, *args: str, pipe_from: str = ""
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the installer into tmp_path/prefix (piped from curl, as users do, with pipe_from)."""
    prefix = tmp_path / "prefix"
    env = {
        **clean_env(),
        "HOME": str(tmp_path / "home"),
        "PEX_ROOT": str(tmp_path / "pex-root"),
        "LLM_OPTIMIZER_API_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
    }
    if pipe_from:
        quoted = " ".join(f"'{a}'" for a in (*args, "--prefix", str(prefix)))
        argv = ["/bin/sh", "-c", f"curl -fsSL '{pipe_from}' | sh -s -- {quoted}"]
    else:
        argv = ["/bin/sh", str(INSTALLER), *args, "--prefix", str(prefix)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    return result, prefix


def test_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [str(shellcheck), "-s", "sh", str(INSTALLER)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_one_line_installs_the_verified_pex_and_runs_version(
    server: str, released: Path, tmp_path: Path
) -> None:
    require_tool("curl")
    base = f"{server}/good"
    result, prefix = install(tmp_path, "--base-url", base, pipe_from=f"{base}/install.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    installed = prefix / "bin" / "llm-optimizer"
    assert os.access(installed, os.X_OK)
    assert artifacts.sha256(installed) == artifacts.sha256(released / CLI_PEX)
    assert f"{CLI_PEX}: sha256 matches SHA256SUMS" in result.stdout
    assert VERSION in result.stdout  # `llm-optimizer version` ran: {"client": VERSION, ...}
    assert sorted(p.name for p in (prefix / "bin").iterdir()) == ["llm-optimizer"]


def test_a_tampered_pex_is_refused_and_nothing_is_installed(server: str, tmp_path: Path) -> None:
    result, prefix = install(tmp_path, "--base-url", f"{server}/tampered")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{CLI_PEX}: sha256 " in result.stderr
    assert "does not match SHA256SUMS" in result.stderr
    assert "nothing was installed" in result.stderr
    assert not prefix.exists()


def test_a_platform_the_release_lacks_is_refused(server: str, tmp_path: Path) -> None:
    result, prefix = install(tmp_path, "--base-url", f"{server}/good", "--platform", "macos-arm64")
    assert result.returncode == 1
    assert "lists no llm-optimizer-cli pex for macos-arm64" in result.stderr
    assert not prefix.exists()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    result, _ = install(tmp_path, "--component", "gui", "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "--component must be cli or service" in result.stderr
    result, _ = install(tmp_path)
    assert result.returncode == 2
    assert "--base-url URL" in result.stderr
