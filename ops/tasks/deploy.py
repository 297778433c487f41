"""Invoke collection: deploy — `invoke deploy [--target T] [--env E] [--dry-run]`, status, down.

Targets and environments are data in ops/deploy/targets.py; the local target is ops/deploy/local.py.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

TARGET_HELP = "local (default), compose, kubernetes, helm or systemd (see docs/tasks.md)"
ENV_HELP = "dev (default) or prod"
DRY_RUN_HELP = "print the full plan, every command in order, and change nothing"


@task(
    default=True,
    help={"target": TARGET_HELP, "env": ENV_HELP, "dry_run": DRY_RUN_HELP},
)
def up(c: Context, target: str = "", env: str = "", dry_run: bool = False) -> None:
    """Deploy the service (default: locally on embedded defaults); running it again redeploys."""
    from ops.deploy import targets

    defaults = c.config.llm_optimizer.deploy
    targets.run(
        c,
        target=target or str(defaults.target),
        env=env or str(defaults.env),
        dry_run=dry_run,
    )


@task
def status(c: Context) -> None:
    """Show whether the local deployment runs and is ready (exit 3 when it is not)."""
    from ops.deploy import local as deploy_local

    code = deploy_local.status(c)
    if code != 0:
        raise Exit(code=code)


@task(help={"dry_run": "say what would be stopped and stop nothing"})
def down(c: Context, dry_run: bool = False) -> None:
    """Stop the local deployment (SIGTERM via its pid file, then wait until its ports are free)."""
    from ops.deploy import local as deploy_local

    deploy_local.down(c, dry_run=dry_run)
