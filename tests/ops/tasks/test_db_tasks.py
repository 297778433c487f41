"""db.* and health-check tasks: the same service CLI on every --target.

- local: run for real against a local deployment whose venv is this checkout's (SQLite):
  migrate, status, backup, verify, restore (confirmation), rollback, health-check's exit code;
- compose, kubernetes, systemd: the exact command lines (no cluster, stack or installed unit is
  needed to build them; the runs themselves are proven in tests/infra for those targets' own
  deploys, and by tests/service/backup for the CLI underneath).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project
from ops.tasks import db, workflow
from ops.tasks.root import DEFAULT_CONFIG
from tests._support.service import service_command


def _context(state: Path, **overrides: Any) -> Context:
    config = Config(overrides={"llm_optimizer": {"local": {"state_dir": str(state)}}, **overrides})
    config.load_collection(DEFAULT_CONFIG)
    return Context(config=config)


def _dry(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """The command lines a dry run printed."""
    lines = [
        line.removeprefix("[dry-run] ")
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("[dry-run] ")
    ]
    return [shlex.split(line) for line in lines]


def _tail(argv: list[str], marker: str) -> list[str]:
    return argv[argv.index(marker) + 1 :]


def test_compose_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _context(tmp_path)
    db.migrate(c, target="compose", dry_run=True)
    db.rollback(c, target="compose", to="base", dry_run=True)
    db.status(c, target="compose", dry_run=True)
    db.backup(c, target="compose", dir=str(tmp_path / "bk"), dry_run=True)
    db.verify(c, path=str(tmp_path / "bk" / "a.tar.gz"), target="compose", dry_run=True)
    db.restore(c, path=str(tmp_path / "bk" / "a.tar.gz"), target="compose", dry_run=True)
    workflow.health_check(c, target="compose", dry_run=True)
    runs = _dry(capsys)
    assert all(argv[:2] == ["docker", "compose"] for argv in runs), runs
    assert [_tail(argv, "migrate") for argv in runs[:-1]] == [
        ["db", "upgrade", "--to", "head"],
        ["db", "downgrade", "base"],
        ["db", "current"],
        ["db", "check"],
        ["backup", "create", "--dir", "/backups"],
        ["backup", "verify", "/backups/a.tar.gz"],
        ["backup", "restore", "/backups/a.tar.gz", "--force"],
    ]
    assert all(a[a.index("run") :][:4] == ["run", "--rm", "--no-deps", "-T"] for a in runs[:-1])
    assert f"--volume={tmp_path / 'bk'}:/backups" in runs[4]
    assert f"--volume={tmp_path / 'bk'}:/backups:ro" in runs[6]
    assert _tail(runs[-1], "exec") == ["-T", "optimizer", project.SERVICE_COMMAND, "health"]
    assert not (tmp_path / "bk").exists()  # dry run: nothing created


def test_kubernetes_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _context(
        tmp_path,
        llm_optimizer={
            "local": {"state_dir": str(tmp_path)},
            "kube_context": "prod",
            "namespace": "opt",
        },
    )
    db.migrate(c, target="kubernetes", dry_run=True)
    db.backup(c, target="kubernetes", dry_run=True)
    db.restore(c, path="/var/lib/llm-optimizer/backups/x.tar.gz", target="kubernetes", dry_run=True)
    workflow.health_check(c, target="kubernetes", json=True, dry_run=True)
    runs = _dry(capsys)
    prefix = [
        "kubectl",
        "--context",
        "prod",
        "--namespace",
        "opt",
        "exec",
        "deploy/llm-optimizer",
        "--",
        project.SERVICE_COMMAND,
    ]
    assert runs == [
        [*prefix, "db", "upgrade", "--to", "head"],
        [*prefix, "backup", "create"],
        [*prefix, "backup", "restore", "/var/lib/llm-optimizer/backups/x.tar.gz", "--force"],
        [*prefix, "health", "--json"],
    ]


def test_systemd_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _context(tmp_path)
    db.migrate(c, target="systemd", to="0001", dry_run=True)
    db.backup(c, target="systemd", dir="/srv/backups", dry_run=True)
    workflow.health_check(c, target="systemd", dry_run=True)
    runs = _dry(capsys)
    for argv in runs:
        assert argv[:5] == ["systemd-run", "--quiet", "--pipe", "--wait", "--collect"]
        assert "--property=User=llm-optimizer" in argv
        assert "--property=EnvironmentFile=-/etc/llm-optimizer/llm-optimizer.env" in argv
        assert "--property=Environment=LLM_OPTIMIZER_DATA_DIR=/var/lib/llm-optimizer" in argv
    service = "/opt/llm-optimizer/venv/bin/llm-optimizer-service"
    assert [_tail(argv, service) for argv in runs] == [
        ["db", "upgrade", "--to", "0001"],
        ["backup", "create", "--dir", "/srv/backups"],
        ["health"],
    ]


def test_unknown_target_and_unconfirmed_restore(tmp_path: Path) -> None:
    c = _context(tmp_path)
    with pytest.raises(Exit, match="unknown --target 'nomad'; choose one of: local, compose"):
        db.migrate(c, target="nomad")
    with pytest.raises(Exit, match="run again with --yes"):  # stdin is not a terminal here
        db.restore(c, path="x.tar.gz", target="compose")


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    """A local deployment whose venv is this checkout's (the service CLI under test)."""
    state = tmp_path / "state"
    (state / "venv" / "bin").mkdir(parents=True)
    script = state / "venv" / "bin" / project.SERVICE_COMMAND
    found = service_command()
    if len(found) == 1:
        script.symlink_to(found[0])
    else:
        script.write_text(f'#!/bin/sh\nexec {shlex.join(found)} "$@"\n')
        script.chmod(0o755)
    (state / "api-keys").write_text("local-test-key\n")
    return state


def test_local_target_for_real(
    deployed: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    c = _context(deployed)
    db.migrate(c)
    backups = tmp_path / "backups"
    db.backup(c, dir=str(backups))
    archives = sorted(backups.glob("llm-optimizer-backup-*.tar.gz"))
    assert len(archives) == 1
    db.verify(c, path=str(archives[0]))
    assert "OK" in capfd.readouterr().out

    db.rollback(c, to="base")
    with pytest.raises(Exit, match="not at head"):
        db.status(c)
    db.restore(c, path=str(archives[0]), yes=True)  # the backup is at head: restored at head
    db.status(c)
    out = capfd.readouterr().out
    assert "restored" in out
    assert "the schema on --target local is at head" in out

    with pytest.raises(Exit, match="the local deployment is unhealthy") as stopped:
        workflow.health_check(c)  # nothing serves on the configured port
    assert stopped.value.code == 1


def test_db_tasks_are_listed_with_help() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "invoke", "--list", "db"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == 0, result.stderr
    for name in ("migrate", "rollback", "status", "backup", "restore", "verify"):
        assert f"  .{name} " in result.stdout
