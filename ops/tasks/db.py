"""Invoke collection: db — migrations, backup and restore through the service's own CLI.

Every task runs ``llm-optimizer-service db …`` / ``backup …`` (the one implementation, see the
contract) where the service runs, chosen with ``--target``: ``local`` (the ``invoke deploy``
deployment), ``compose`` (a throwaway container of the stack), ``kubernetes`` (``kubectl exec``
into the release's Deployment) or ``systemd`` (on this host, as the unit's user with its
environment file). The command lines are built in :mod:`ops.deploy.service_cli`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.deploy.service_cli import COMPOSE_BACKUP_DIR, TARGET_HELP

if TYPE_CHECKING:
    from invoke.runners import Result

DRY_RUN_HELP = "print the command and run nothing"


def _service(
    c: Context,
    target: str,
    *args: str,
    dry_run: bool = False,
    mounts: dict[Path, str] | None = None,
    check: bool = True,
    capture: bool = False,
) -> Result | None:
    """Run ``llm-optimizer-service ARGS`` on ``target``."""
    from ops.core import project
    from ops.core.runner import runner_for
    from ops.deploy import service_cli

    call = service_cli.invocation(c, target, args, mounts=mounts)
    runner = runner_for(c, dry_run=dry_run)
    local = call.service_command
    if local is not None and not runner.dry_run and not local.exists():
        raise Exit(
            f"{local} does not exist: nothing is deployed locally yet; run: uv run invoke deploy",
            code=1,
        )
    return runner.run(
        call.argv,
        env=call.env,
        cwd=call.cwd,
        check=check,
        capture=capture,
        hint=f"{project.SERVICE_COMMAND} {' '.join(args)} on --target {target} failed; "
        'its output is above ("No such command": the deployed service is older; redeploy)',
    )


def _archive_args(target: str, path: str) -> tuple[str, dict[Path, str]]:
    """The archive path as the command sees it, and (compose) the bind mount providing it."""
    if target != "compose":
        return path, {}
    host = Path(path).resolve()
    return f"{COMPOSE_BACKUP_DIR}/{host.name}", {host.parent: f"{COMPOSE_BACKUP_DIR}:ro"}


@task(
    help={
        "target": TARGET_HELP,
        "to": "revision to migrate to (default head)",
        "dry_run": DRY_RUN_HELP,
    }
)
def migrate(c: Context, target: str = "local", to: str = "head", dry_run: bool = False) -> None:
    """Migrate the database up (llm-optimizer-service db upgrade --to REV), under the advisory
    lock on PostgreSQL."""
    _service(c, target, "db", "upgrade", "--to", to, dry_run=dry_run)


@task(
    help={
        "target": TARGET_HELP,
        "to": "revision to go back to: -1 (one step, the default), a revision id, or base",
        "dry_run": DRY_RUN_HELP,
    }
)
def rollback(c: Context, target: str = "local", to: str = "-1", dry_run: bool = False) -> None:
    """Migrate the database down (llm-optimizer-service db downgrade REV). Back up first:
    a downgrade may drop columns or tables."""
    _service(c, target, "db", "downgrade", to, dry_run=dry_run)


@task(help={"target": TARGET_HELP, "dry_run": DRY_RUN_HELP})
def status(c: Context, target: str = "local", dry_run: bool = False) -> None:
    """Show the schema revision and whether it is at head and matches the models
    (llm-optimizer-service db current, then db check)."""
    _service(c, target, "db", "current", dry_run=dry_run)
    result = _service(c, target, "db", "check", dry_run=dry_run, check=False)
    if result is None:
        return
    if result.exited != 0:
        raise Exit(
            f"the schema on --target {target} is not at head (or differs from the models); "
            f"run: uv run invoke db.migrate --target {target}",
            code=1,
        )
    print(f"the schema on --target {target} is at head")


@task(
    help={
        "target": TARGET_HELP,
        "dir": "backup directory (default: the service's <data_dir>/backups; compose: "
        "<state dir>/backups/compose on this host)",
        "dry_run": DRY_RUN_HELP,
    }
)
def backup(c: Context, target: str = "local", dir: str = "", dry_run: bool = False) -> None:
    """Back up the database, Redis keys and masked config (llm-optimizer-service backup create)."""
    from ops.core import project

    args = ["backup", "create"]
    mounts: dict[Path, str] = {}
    if target == "compose":
        host = Path(dir).resolve() if dir else project.state_dir() / "backups" / "compose"
        if not dry_run:
            host.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # the image's user must be able to write the archive there
                os.chown(host, project.IMAGE_UID, project.IMAGE_UID)
        mounts = {host: COMPOSE_BACKUP_DIR}
        args += ["--dir", COMPOSE_BACKUP_DIR]
        print(f"backups of the compose stack go to {host}")
    elif dir:
        args += ["--dir", dir]
    _service(c, target, *args, dry_run=dry_run, mounts=mounts)


@task(
    help={
        "path": "the backup archive (on this host; kubernetes: in the pod)",
        "target": TARGET_HELP,
        "dry_run": DRY_RUN_HELP,
    }
)
def verify(c: Context, path: str, target: str = "local", dry_run: bool = False) -> None:
    """Check a backup archive, its checksums and manifest without touching any database
    (llm-optimizer-service backup verify PATH)."""
    inside, mounts = _archive_args(target, path)
    _service(c, target, "backup", "verify", inside, dry_run=dry_run, mounts=mounts)


@task(
    help={
        "path": "the backup archive (on this host; kubernetes: in the pod)",
        "target": TARGET_HELP,
        "yes": "confirm without asking: restoring replaces the current data",
        "dry_run": DRY_RUN_HELP,
    }
)
def restore(
    c: Context, path: str, target: str = "local", yes: bool = False, dry_run: bool = False
) -> None:
    """Restore a backup, replacing the data (llm-optimizer-service backup restore PATH --force).

    Asks for confirmation unless --yes. Stop the service first on SQLite (local)."""
    if not yes and not dry_run:
        question = f"restoring {path} replaces the data on --target {target}; type 'yes': "
        if not sys.stdin.isatty():
            raise Exit(
                f"restoring {path} replaces the current data; run again with --yes to confirm",
                code=1,
            )
        if input(question).strip().lower() != "yes":
            raise Exit("restore cancelled; nothing was changed", code=1)
    inside, mounts = _archive_args(target, path)
    # --yes is the operator's confirmation; the CLI's --force allows replacing existing data.
    _service(c, target, "backup", "restore", inside, "--force", dry_run=dry_run, mounts=mounts)
