"""The linux-aarch64 pex of the service really runs: `version` under qemu-user-static."""

from __future__ import annotations

from pathlib import Path

from ops.build import artifacts
from ops.core import project
from ops.core.runner import Runner
from tests._support import foreign
from tests._support.tools import require_tool


def test_aarch64_service_pex_runs_version_under_qemu(tmp_path: Path) -> None:
    require_tool("pex")
    require_tool("debootstrap")
    require_tool("qemu-aarch64-static")
    runner = Runner(echo=False)
    foreign.ensure_binfmt(runner)
    rootfs = foreign.python_rootfs(runner)
    machine = runner.output(
        ["chroot", rootfs, "/usr/bin/python3", "-c", "import platform; print(platform.machine())"]
    )
    assert machine == "aarch64"
    service = next(p for p in artifacts.packages() if p.dist == project.SERVICE_DIST)
    artifacts.build_packages(runner, tmp_path / "packages")
    pex = artifacts.build_pex(
        runner, service, "linux-aarch64", tmp_path / "packages", tmp_path, tmp_path
    )
    output = foreign.run_python(runner, rootfs, pex, "version")
    assert f"{project.SERVICE_COMMAND} {project.version()}" in output
