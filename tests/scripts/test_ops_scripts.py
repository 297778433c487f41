"""scripts/backup.sh, restore.sh, migrate.sh, health-check.sh: shellcheck-clean POSIX wrappers
of the service CLI, run for real (SQLite, and a running service for health-check's exit 0),
and the cron example's line."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ops.core import project
from tests._support.service import RunningService, service_command
from tests._support.tools import require_tool

SCRIPTS = project.ROOT / "scripts"
NAMES = ("backup.sh", "restore.sh", "migrate.sh", "health-check.sh")


def run(
    name: str, *args: str, env: dict[str, str], stdin: str | None = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(SCRIPTS / name), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    command = service_command()
    if len(command) == 1:
        cmd = command[0]
    else:
        wrapper = tmp_path / "llm-optimizer-service"
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(command) + ' "$@"\n')
        wrapper.chmod(0o755)
        cmd = str(wrapper)
    return {
        **base,
        "LLM_OPTIMIZER_OPS_SERVICE_CMD": cmd,
        "LLM_OPTIMIZER_DATA_DIR": str(tmp_path / "data"),
        "LLM_OPTIMIZER_SERVER__HTTP_PORT": "9",  # nothing listens: unhealthy
        "LLM_OPTIMIZER_SERVER__GRPC_PORT": "9",
    }


def test_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    paths = [str(SCRIPTS / name) for name in (*NAMES, "_common.sh")]
    result = subprocess.run(
        [str(shellcheck), "-x", "-s", "sh", *paths],
        cwd=project.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_help_and_bad_arguments(name: str, env: dict[str, str]) -> None:
    assert os.access(SCRIPTS / name, os.X_OK)
    helped = run(name, "--help", env=env)
    assert helped.returncode == 0
    assert helped.stdout.startswith(f"usage: {name}")
    bad = run(name, "--no-such-option", env=env)
    assert bad.returncode == 2
    assert "--no-such-option" in bad.stderr
    assert "usage:" in bad.stderr


def test_service_command_lookup(env: dict[str, str]) -> None:
    """$LLM_OPTIMIZER_OPS_SERVICE_CMD, else PATH, else the systemd install, else a clear error."""
    probe = f'. "{SCRIPTS}/_common.sh"; find_service; echo "$SERVICE"'
    given = {**env, "LLM_OPTIMIZER_OPS_SERVICE_CMD": "/x/llm-optimizer-service"}
    found = subprocess.run(["/bin/sh", "-c", probe], env=given, capture_output=True, text=True)
    assert found.stdout.strip() == "/x/llm-optimizer-service"
    bare = {**env, "LLM_OPTIMIZER_OPS_SERVICE_CMD": "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["/bin/sh", "-c", probe], env=bare, capture_output=True, text=True)
    installed = Path("/opt/llm-optimizer/venv/bin/llm-optimizer-service")
    if installed.exists():  # a systemd install on this host is the last fallback
        assert result.stdout.strip() == str(installed)
    else:
        assert result.returncode == 1
        assert "llm-optimizer-service not found: put it on PATH" in result.stderr


def test_migrate_backup_restore_health(env: dict[str, str], tmp_path: Path) -> None:
    migrated = run("migrate.sh", env=env)
    assert migrated.returncode == 0, migrated.stderr
    backups = tmp_path / "data" / "backups"
    backups.mkdir()
    old = backups / "llm-optimizer-backup-20200101T000000Z.tar.gz"
    old.write_bytes(b"an old archive")

    made = run("backup.sh", "--keep", "1", env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    archive = Path(re.findall(r"backup OK: (\S+)", made.stdout)[0])
    assert archive.parent == backups
    assert sorted(backups.iterdir()) == [archive]  # verified, and the old one expired

    refused = run("restore.sh", str(archive), "--force", env=env)  # no terminal, no --yes
    assert refused.returncode == 1
    assert "add --yes to confirm" in refused.stderr
    restored = run("restore.sh", str(archive), "--force", "--yes", env=env)
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout

    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(archive.read_bytes()[:100])
    bad = run("restore.sh", str(damaged), "--force", "--yes", env=env)
    assert bad.returncode == 1
    assert "fails verification; nothing was changed" in bad.stderr

    down = run("health-check.sh", "--timeout", "1", env=env)
    assert down.returncode == 1, down.stdout


def test_health_check_healthy(running_service: RunningService, env: dict[str, str]) -> None:
    settings = {
        **running_service.env,
        "LLM_OPTIMIZER_OPS_SERVICE_CMD": env["LLM_OPTIMIZER_OPS_SERVICE_CMD"],
    }
    result = run("health-check.sh", "--json", env=settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "healthy"' in result.stdout


def test_cron_example_runs_backup_with_retention() -> None:
    cron = (SCRIPTS / "cron" / "llm-optimizer-backup").read_text()
    jobs = [
        line
        for line in cron.splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(jobs) == 1
    fields = jobs[0].split()
    minute, hour, dom, month, dow, user, command = fields[:7]
    assert (dom, month, dow) == ("*", "*", "*")
    assert 0 <= int(minute) < 60
    assert 0 <= int(hour) < 24
    assert user == "llm-optimizer"
    assert command == "/opt/llm-optimizer/scripts/backup.sh"
    assert "--keep" in fields
    assert "--keep-days" in fields
