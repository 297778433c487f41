"""The committed gRPC stubs are exactly what grpcio-tools generates from the proto (the check
``nox -s proto`` makes), and ``--check`` reports a stale file by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ops.build import proto
from ops.core.project import ROOT


def test_committed_stubs_match_a_fresh_generation() -> None:
    assert proto.differences() == [], "run `nox -s proto` and commit the regenerated stubs"


def test_check_names_a_stale_stub(tmp_path: Path) -> None:
    stub = proto.GENERATED_DIR / "optimizer_pb2.pyi"
    original = stub.read_text(encoding="utf-8")
    stub.write_text(original + "# edited by hand\n", encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ops.build.proto", "--check"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stub.write_text(original, encoding="utf-8")
    assert done.returncode == 1
    assert "optimizer_pb2.pyi" in done.stderr
    assert "nox -s proto" in done.stderr
