"""Invoke collection: systemd — install, uninstall and inspect llm-optimizer.service on this host.

The work is ``ops.deploy.systemd`` (also ``invoke deploy --target systemd``): infra/systemd's
install.sh and uninstall.sh run from a wheel directory built here, and systemctl/journalctl.
"""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core import project
from ops.core.runner import Runner, runner_for
from ops.deploy.systemd import (
    DEFAULT_PREFIX,
    WHEEL_DIR,
    build_wheels,
    install_argv,
    journalctl,
    require_root,
    uninstall_argv,
)
from ops.deploy.systemd import status as unit_status


def _wheel_dir(runner: Runner, wheel_dir: str) -> Path:
    return Path(wheel_dir).resolve() if wheel_dir else build_wheels(runner)


PREFIX_HELP = f"install prefix (default {DEFAULT_PREFIX})"
DRY_RUN_HELP = "print every command and change nothing"


@task(help={"out": f"directory to fill (default {WHEEL_DIR.relative_to(project.ROOT)})"})
def wheels(c: Context, out: str = "") -> None:
    """Build the wheel directory install.sh installs from (the service and its locked deps)."""
    path = build_wheels(runner_for(c), Path(out).resolve() if out else WHEEL_DIR)
    print(path)


@task(
    help={
        "prefix": PREFIX_HELP,
        "wheel_dir": "install from these wheels (default: build them first)",
        "start": "start (or restart after an upgrade) the service once installed",
        "dry_run": DRY_RUN_HELP,
    }
)
def install(
    c: Context,
    prefix: str = DEFAULT_PREFIX,
    wheel_dir: str = "",
    start: bool = False,
    dry_run: bool = False,
) -> None:
    """Install llm-optimizer.service on this host with infra/systemd/install.sh (root)."""
    runner = runner_for(c, dry_run=dry_run)
    if not runner.dry_run:
        require_root("install")
    runner.run(install_argv(wheel_dir=_wheel_dir(runner, wheel_dir), prefix=prefix, start=start))


@task(
    help={
        "prefix": PREFIX_HELP,
        "purge": "also delete the data, the configuration and the system user",
        "dry_run": DRY_RUN_HELP,
    }
)
def uninstall(
    c: Context, prefix: str = DEFAULT_PREFIX, purge: bool = False, dry_run: bool = False
) -> None:
    """Remove llm-optimizer.service with infra/systemd/uninstall.sh; keeps data unless --purge."""
    runner = runner_for(c, dry_run=dry_run)
    if not runner.dry_run:
        require_root("uninstall")
    runner.run(uninstall_argv(prefix=prefix, purge=purge))


@task
def status(c: Context) -> None:
    """Show the unit's status; exits 3 unless it is active."""
    require_root("status")
    code = unit_status(c)
    if code != 0:
        raise Exit(code=code)


@task(
    help={
        "lines": "how many recent lines to show (default 100)",
        "follow": "keep printing new lines",
        "since": "only lines since this time, e.g. '10 min ago' or '2026-01-01 12:00'",
    }
)
def logs(c: Context, lines: int = 100, follow: bool = False, since: str = "") -> None:
    """Show the service's journal (journald is its only log destination)."""
    require_root("logs")
    argv = journalctl("--lines", str(lines))
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("--follow")
    runner_for(c).run(argv)
