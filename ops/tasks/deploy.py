"""Invoke collection: deploy — `invoke deploy [--target T] [--env E] [--dry-run]`, status, down.

The targets are modules of ``ops.deploy`` (registry: ``ops/deploy/targets.py``).
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.deploy import targets
from ops.deploy.environments import ENVIRONMENTS

TARGET_HELP = f"{', '.join(targets.TARGETS)} (default: llm_optimizer.deploy.target, local)"
ENV_HELP = f"{' or '.join(ENVIRONMENTS)} (default: llm_optimizer.deploy.env, dev)"
DRY_RUN_HELP = "print the full plan, every command in order, and change nothing"


def _target(c: Context, target: str) -> str:
    return target or str(c.config.llm_optimizer.deploy.target)


@task(
    default=True,
    help={"target": TARGET_HELP, "env": ENV_HELP, "dry_run": DRY_RUN_HELP},
)
def up(c: Context, target: str = "", env: str = "", dry_run: bool = False) -> None:
    """Deploy the service (default: locally on embedded defaults); running it again redeploys."""
    env = env or str(c.config.llm_optimizer.deploy.env)
    targets.run(c, target=_target(c, target), env=env, dry_run=dry_run)


@task(help={"target": TARGET_HELP})
def status(c: Context, target: str = "") -> None:
    """Show whether the deployment runs and is ready (exit 3 when it is not)."""
    code = targets.status(c, target=_target(c, target))
    if code != 0:
        raise Exit(code=code)


@task(help={"target": TARGET_HELP, "dry_run": "say what would be removed and remove nothing"})
def down(c: Context, target: str = "", dry_run: bool = False) -> None:
    """Remove the deployment; its data stays (local: SIGTERM, then wait for free ports)."""
    targets.down(c, target=_target(c, target), dry_run=dry_run)
