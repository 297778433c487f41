"""The systemd Invoke tasks: the commands they build, root checks, dry runs (MockContext).

The scripts they run are exercised for real in test_systemd_install.py and, under a real
systemd, in test_systemd_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke.exceptions import Exit
from invoke.runners import Result

from ops.deploy import systemd as target
from ops.deploy import targets
from ops.tasks import systemd
from tests._support.invoke_context import Recorder


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target.os, "geteuid", lambda: 1000)


@pytest.mark.parametrize("name", ["install", "uninstall", "status", "logs"])
def test_tasks_refuse_non_root_with_the_fix(not_root: None, name: str) -> None:
    c = Recorder()
    with pytest.raises(Exit, match=rf"systemd\.{name} needs root.*sudo -E uv run invoke"):
        getattr(systemd, name)(c)
    assert c.commands == []


def test_install_runs_install_sh_with_the_given_wheels(tmp_path: Path) -> None:
    c = Recorder()
    systemd.install(c, wheel_dir=str(tmp_path), start=True)
    assert len(c.commands) == 1
    assert [Path(c.commands[0][0]).name, *c.commands[0][1:]] == [
        "bash",
        str(target.INSTALL_SCRIPT),
        "--wheel-dir",
        str(tmp_path),
        "--prefix",
        "/opt/llm-optimizer",
        "--start",
    ]


def test_install_dry_run_runs_nothing_even_without_root(
    not_root: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = Recorder()
    systemd.install(c, wheel_dir=str(tmp_path), dry_run=True)
    assert c.commands == []
    assert f"[dry-run] bash {target.INSTALL_SCRIPT}" in capsys.readouterr().err


def test_uninstall_passes_purge_and_prefix() -> None:
    c = Recorder()
    systemd.uninstall(c, prefix="/srv/llm", purge=True)
    assert [Path(c.commands[0][0]).name, *c.commands[0][1:]] == [
        "bash",
        str(target.UNINSTALL_SCRIPT),
        "--prefix",
        "/srv/llm",
        "--purge",
    ]


def test_status_fails_unless_active(capsys: pytest.CaptureFixture[str]) -> None:
    c = Recorder({r"systemctl is-active": Result(stdout="failed\n", exited=3)})
    with pytest.raises(Exit) as error:
        systemd.status(c)
    assert error.value.code == 3
    out = capsys.readouterr().out
    assert "llm-optimizer.service is failed; see: uv run invoke systemd.logs" in out
    assert c.commands[0][1:] == [
        "status",
        "--no-pager",
        "--full",
        "llm-optimizer.service",
        "llm-optimizer.socket",
    ]


def test_status_passes_when_active() -> None:
    c = Recorder({r"systemctl is-active": Result(stdout="active\n")})
    systemd.status(c)


def test_logs_builds_one_journalctl_command() -> None:
    c = Recorder()
    systemd.logs(c, lines=20, follow=True, since="10 min ago")
    assert c.commands[0][1:] == [
        "--unit",
        "llm-optimizer.service",
        "--no-pager",
        "--lines",
        "20",
        "--since",
        "10 min ago",
        "--follow",
    ]


def test_deploy_target_is_what_the_dispatcher_calls() -> None:
    assert targets.TARGETS["systemd"] is target.TARGET
    assert target.TARGET.apply is target.apply


def test_deploy_dry_run_shows_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    c = Recorder(run={"dry": True})
    target.TARGET.plan(c, env="prod")
    err = capsys.readouterr()
    shown = err.out + err.err
    assert "uv export" in shown  # the locked requirements, for the wheel directory
    assert f"bash {target.INSTALL_SCRIPT}" in shown
    assert "systemctl restart llm-optimizer.service" in shown
    assert c.commands == []  # nothing ran


def test_failed_start_shows_the_journal_and_names_the_fix(tmp_path: Path) -> None:
    c = Recorder({r"systemctl restart": Result(exited=1)})
    with pytest.raises(Exit, match="LLM_OPTIMIZER_AUTH__API_KEYS_FILE"):
        target.start_and_check(target.Runner(ctx=c))
    assert any(argv[0].endswith("journalctl") for argv in c.commands)
