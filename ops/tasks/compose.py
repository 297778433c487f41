"""Invoke collection: compose — the Compose stacks in infra/docker (see docs/containers.md).

``invoke deploy --target compose`` is ``ops.deploy.compose``. The project name is
``llm_optimizer.compose.project`` (default ``llm-optimizer``); with
``--standins`` (or ``llm_optimizer.compose.standins: true``) the images are the local stand-ins
of compose.ci.yml, for machines that can't pull images (``ops.docker.compose.Stack``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

if TYPE_CHECKING:
    from ops.docker import compose as compose_stack

ENV_HELP = "dev (default) or prod (compose.yml + compose.prod.yml)"
STANDINS_HELP = "add compose.ci.yml: stand-ins built here for every image but grafana/jaeger"
DRY_RUN_HELP = "print every command and change nothing"


def _target(c: Context, standins: bool = False) -> compose_stack.Stack:
    from ops.deploy import compose

    return compose.stack(c, standins=standins)


@task(
    help={
        "env": ENV_HELP,
        "wait": "wait until every started service is running/healthy (compose up --wait)",
        "services": "comma-separated services to start with their dependencies (default: all)",
        "standins": STANDINS_HELP,
        "dry_run": DRY_RUN_HELP,
    }
)
def up(
    c: Context,
    env: str = "dev",
    wait: bool = False,
    services: str = "",
    standins: bool = False,
    dry_run: bool = False,
) -> None:
    """Build the service image and start the stack (docker compose up --detach)."""
    from ops.deploy import compose

    compose.up(
        c,
        env=env,
        dry_run=dry_run,
        wait=wait,
        services=[s for s in services.split(",") if s],
        standins=standins,
    )


@task(
    help={
        "volumes": "also remove the stack's volumes (all data)",
        "standins": STANDINS_HELP,
        "dry_run": DRY_RUN_HELP,
    }
)
def down(c: Context, volumes: bool = False, standins: bool = False, dry_run: bool = False) -> None:
    """Stop and remove the stack's containers and network (and volumes with --volumes)."""
    from ops.core.runner import runner_for
    from ops.docker import compose as compose_stack

    target = _target(c, standins)
    compose_stack.down(
        runner_for(c, dry_run=dry_run),
        project=target.project,
        volumes=volumes,
        standins=target.standins,
    )


@task(
    help={
        "service": "only this service's log (default: all)",
        "tail": "lines from the end of each log (default: 200)",
        "follow": "keep following the logs",
    }
)
def logs(c: Context, service: str = "", tail: int = 200, follow: bool = False) -> None:
    """Show the stack's logs."""
    from ops.core.runner import runner_for
    from ops.docker import compose as compose_stack

    args = [
        "logs",
        "--tail",
        str(tail),
        *(["--follow"] if follow else []),
        *([service] if service else []),
    ]
    runner_for(c).run(
        compose_stack.argv("dev", _target(c).project, *args),
        env={"OPTIMIZER_IMAGE": "unused:logs"},
    )


@task
def ps(c: Context) -> None:
    """List the stack's containers with their state and health."""
    from ops.core.runner import Runner
    from ops.docker import compose as compose_stack

    name = _target(c).project
    rows = compose_stack.ps(Runner(ctx=c, echo=False), project=name)
    if not rows:
        print(f"no containers in project {name}")
    for row in rows:
        health = row.get("Health") or "-"
        print(
            f"{row.get('Service', ''):20} {row.get('State', ''):10} {health:10} {row.get('Name')}"
        )


@task(
    help={
        "env": ENV_HELP + "; 'all' checks every file combination and profile",
        "standins": STANDINS_HELP,
    }
)
def config(c: Context, env: str = "all", standins: bool = False) -> None:
    """Validate the compose files (docker compose config --quiet)."""
    from ops.core.runner import runner_for
    from ops.docker import compose as compose_stack

    runner = runner_for(c)
    if env != "all":
        compose_stack.config_check(runner, env, standins=standins)
        return
    for combination in compose_stack.combinations():
        compose_stack.config_check(runner, **combination)
    print("every compose file combination and profile validates")
