"""A real OCI registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

The Docker engine, helm (``--plain-http``) and cosign (``--allow-http-registry``) speak plain
HTTP to registries on 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._support.tools import free_port, require_tool, stop_process


@contextlib.contextmanager
def local_registry(workdir: Path) -> Iterator[str]:
    """A registry storing under ``workdir`` on a free port; yields ``127.0.0.1:PORT``."""
    binary = require_tool("docker-registry")
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(binary), "serve", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                pytest.fail(f"docker-registry did not answer: {log_path.read_text()}")
            yield f"127.0.0.1:{port}"
        finally:
            stop_process(process)
