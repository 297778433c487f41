"""The suite-wide rules: under CI a skip is a failure; each group of tests (the machine's, the Go
tools', each other file) runs on one worker, one test at a time, the Go tools' group last."""

from __future__ import annotations

import ast
import os
import re
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


def _pytest_defaults() -> list[str]:
    """noxfile.py's PYTEST_DEFAULTS (read, not imported: nox is not in the tests' venv)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PYTEST_DEFAULTS"
            for target in statement.targets
        ):
            return list(ast.literal_eval(statement.value))
    raise AssertionError("noxfile.py sets no PYTEST_DEFAULTS")


def test_each_group_runs_on_one_worker(tmp_path: Path) -> None:
    """With the suite's own xdist options, tests marked docker and systemd (two files) all run on
    one worker, those marked go_tools on one worker, and each other file's tests on one worker,
    while the groups spread over both; a pytest-xdist that stops grouping (as with pytest 9.2,
    pytest-dev/pytest-xdist#1386) fails this. The go_tools group, the largest here, starts last:
    in the suite it may wait for the background Go build, and a worker held by it early would
    leave the rest to one worker."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    record = (
        "import os, pytest, time\n\n"
        "def _ran(name):\n"
        "    time.sleep(0.05)\n"
        "    with open('ran.txt', 'a') as f:\n"
        "        f.write(name + ' ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n\n"
    )
    for marker in ("docker", "systemd"):
        tests = "".join(
            f"@pytest.mark.{marker}\ndef test_{marker}_{i}():\n    _ran('machine')\n\n"
            for i in range(4)
        )
        (tmp_path / f"test_{marker}.py").write_text(record + tests)
    (tmp_path / "test_go.py").write_text(
        record
        + "".join(
            f"@pytest.mark.go_tools\ndef test_go_{i}():\n    _ran('go')\n\n" for i in range(12)
        )
    )
    for file in range(3):
        (tmp_path / f"test_rest{file}.py").write_text(
            record + "".join(f"def test_rest_{i}():\n    _ran('rest{file}')\n\n" for i in range(8))
        )
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    docker\n    systemd\n    go_tools\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["LLM_OPTIMIZER_OPS_CACHE"] = str(tmp_path / "cache")  # no builder here to wait for
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    defaults = [arg for arg in _pytest_defaults() if not arg.startswith("--durations")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "xdist",
            *defaults,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b44 passed", result.stdout), result.stdout
    ran: dict[str, set[str]] = {}
    order: list[str] = []  # the groups in the order their first test ran
    for line in (tmp_path / "ran.txt").read_text().splitlines():
        group, worker = line.split()
        ran.setdefault(group, set()).add(worker)
        order += [] if group in order else [group]
    assert sorted(ran) == ["go", "machine", "rest0", "rest1", "rest2"], ran
    assert all(len(workers) == 1 for workers in ran.values()), ran  # a group on one worker
    assert len(set().union(*ran.values())) == 2, ran  # two workers did run
    assert order[-1] == "go", order
