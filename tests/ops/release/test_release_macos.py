"""The macOS pex builds here from PyPI wheels alone, and carries only wheels macOS can install.

Nothing here can run it (no macOS); the release workflow builds both macOS targets with the same
code, and CI's macOS job runs the client's tests from source. This proves the resolution: every
dependency of the service (grpcio, numpy, psycopg-binary, uvloop, httptools, ...) has a wheel
for macOS 11+ on arm64, so `--no-build` succeeds, and release.verify's per-platform wheel check
accepts the result.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ops.build import artifacts
from ops.core import project
from ops.core.runner import Runner
from ops.release import verify
from tests._support.tools import require_tool
from tests.ops.release.conftest import VERSION


def test_macos_arm64_service_pex_builds_from_wheels(released: Path, tmp_path: Path) -> None:
    require_tool("pex")
    service = next(p for p in artifacts.packages() if p.dist == project.SERVICE_DIST)
    out = tmp_path / VERSION
    out.mkdir()
    pex = artifacts.build_pex(
        Runner(echo=False), service, "macos-arm64", released / "packages", out, tmp_path
    )
    assert pex.name == f"{project.SERVICE_DIST}-{VERSION}-macos-arm64.pex"
    report = verify.Report(out)
    verify.check_pex(pex, VERSION, report)
    assert report.problems == []
    with zipfile.ZipFile(pex) as archive:
        wheels = list(json.loads(archive.read("PEX-INFO"))["distributions"])
    native = [w for w in wheels if "macosx" in w]
    assert any(w.startswith("grpcio-") for w in native), wheels
    assert any(w.startswith("uvloop-") for w in native), wheels
    assert not [w for w in wheels if "linux" in w or "win" in w.split("-")[-1]], wheels
