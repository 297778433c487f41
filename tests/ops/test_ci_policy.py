"""The suite-wide rule: under CI a skip is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_pytest_on(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_needs_tool():\n    pytest.skip('tool xyz is not installed')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the sample needs none; startup drops to ~1 s
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_skip_is_a_skip_on_a_laptop(tmp_path: Path) -> None:
    result = _run_pytest_on(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout


def test_skip_fails_under_ci(tmp_path: Path) -> None:
    result = _run_pytest_on(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout
    assert "skipped under CI" in result.stdout
    assert "tool xyz is not installed" in result.stdout
