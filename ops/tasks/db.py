"""Invoke collection: db — migrations, backup and restore through the service's own CLI.

Every task runs ``llm-optimizer-service db …`` / ``backup …`` (the one implementation, see the
contract) against a target. Today that is the local deployment (``invoke deploy``): its venv,
its data dir and settings. Other targets come with the operations issue (issue 10).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

if TYPE_CHECKING:
    from ops.runner import Runner

TARGET_HELP = "where the service runs: local (the `invoke deploy` deployment)"
TARGETS = ("local",)


def _service(c: Context, target: str, *args: str, dry_run: bool = False) -> None:
    """Run ``llm-optimizer-service ARGS`` with the settings of ``target``."""
    from ops import deploy_local, project
    from ops.runner import runner_for

    if target not in TARGETS:
        raise Exit(
            f"db tasks for --target {target} are not available yet: needs the operations "
            f"collection (issue 10); available: {', '.join(TARGETS)}",
            code=1,
        )
    cfg = deploy_local.LocalConfig.from_context(c)
    runner = runner_for(c, dry_run=dry_run)
    if not runner.dry_run and not cfg.service_command.exists():
        raise Exit(
            f"{cfg.service_command} does not exist: nothing is deployed locally yet; "
            "run: uv run invoke deploy",
            code=1,
        )
    if not runner.dry_run:
        _require_command(runner, cfg.service_command, args[0])
    record = deploy_local.read_record(cfg)
    runner.run(
        [str(cfg.service_command), *args],
        env=cfg.service_env(str(record.get("env", "dev"))),
        cwd=cfg.state_dir,
        hint=f"{project.SERVICE_COMMAND} {' '.join(args)} failed; its output is above",
    )


def _require_command(runner: Runner, service: Path, command: str) -> None:
    """Fail with "not available yet" when the installed service CLI lacks ``command``."""
    probe = runner.run([str(service), command, "--help"], check=False, capture=True)
    if probe is not None and probe.exited != 0:
        raise Exit(
            f"db tasks using `{service.name} {command}` are not available yet: needs that "
            "command in the service CLI (issue 10: operations); redeploy after it lands",
            code=1,
        )


@task(help={"target": TARGET_HELP, "dry_run": "print the command and run nothing"})
def migrate(c: Context, target: str = "local", dry_run: bool = False) -> None:
    """Migrate the database to the newest revision (llm-optimizer-service db upgrade)."""
    _service(c, target, "db", "upgrade", dry_run=dry_run)


@task(help={"target": TARGET_HELP, "dry_run": "print the command and run nothing"})
def backup(c: Context, target: str = "local", dry_run: bool = False) -> None:
    """Back up the database (llm-optimizer-service backup create)."""
    _service(c, target, "backup", "create", dry_run=dry_run)


@task(
    help={
        "path": "the backup file to restore",
        "target": TARGET_HELP,
        "yes": "confirm: restoring replaces the current data",
        "dry_run": "print the command and run nothing",
    }
)
def restore(
    c: Context, path: str, target: str = "local", yes: bool = False, dry_run: bool = False
) -> None:
    """Restore the database from a backup (llm-optimizer-service backup restore PATH --force)."""
    if not yes and not dry_run:
        raise Exit(
            f"restoring {path} replaces the current data; run again with --yes to confirm", code=1
        )
    # --yes is the operator's confirmation; the CLI's --force allows replacing existing data.
    _service(c, target, "backup", "restore", path, "--force", dry_run=dry_run)
