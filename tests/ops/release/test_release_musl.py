"""The musl (musllinux 1.2, x86_64) client pex builds here from PyPI wheels alone, and carries
only wheels a musl CPython 3.11 can install.

The session's dry-run release builds it with the universal client pex (conftest.py) with
``--no-build``, so every dependency of the client resolved to a wheel. Nothing here runs it: that
needs a musl CPython (Alpine's python3, or a python-build-standalone musl build), which no
registry this machine reaches provides. The service gets no musl pex: aiokafka 0.14.0 has no
musllinux wheel (artifacts.CLIENT_PLATFORMS).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from ops.build import artifacts
from ops.core import project
from ops.release import verify
from tests.ops.release.conftest import VERSION

MUSL = "linux-x86_64-musl"
MUSL_PEX = f"{project.CLI_DIST}-{VERSION}-{MUSL}.pex"


def test_musl_gets_a_client_pex_only_built_with_the_universal_one() -> None:
    targets = [(p.dist, target) for p, target in artifacts.pex_targets(artifacts.UNIVERSAL)]
    assert targets == [(project.CLI_DIST, artifacts.UNIVERSAL), (project.CLI_DIST, MUSL)]
    assert MUSL not in artifacts.PLATFORMS  # no service pex; the universal pex does not cover it
    assert verify.pex_platform(MUSL_PEX, VERSION) == (project.CLI_DIST, MUSL)
    service = f"{project.SERVICE_DIST}-{VERSION}-{MUSL}.pex"
    assert verify.pex_platform(service, VERSION) is None  # release.verify rejects its name


def test_musl_client_pex_carries_only_musllinux_binary_wheels(
    released: Path, tmp_path: Path
) -> None:
    pex = released / MUSL_PEX
    report = verify.Report(released)
    verify.check_pex(pex, VERSION, report)
    assert report.problems == []
    with zipfile.ZipFile(pex) as archive:
        wheels = list(json.loads(archive.read("PEX-INFO"))["distributions"])
    binary = [w for w in wheels if not w.removesuffix(".whl").endswith("-any")]
    assert binary, wheels  # the check below has something to check
    assert all("musllinux_1_" in w for w in binary), binary
    # The same file named as the glibc pex fails release.verify's per-platform wheel check.
    glibc = tmp_path / MUSL_PEX.replace(MUSL, "linux-x86_64")
    shutil.copy2(pex, glibc)
    report = verify.Report(tmp_path)
    verify.check_pex(glibc, VERSION, report)
    assert any("does not install on linux-x86_64;" in p for p in report.problems), report.problems
