"""Root task ``new-service``: a new service from templates/service (docs/adding-a-service.md)."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task


@task(
    name="new-service",
    help={
        "name": "the service's name: lowercase letters, digits, single hyphens (e.g. billing-api); "
        "also its directory services/NAME, package, command, image, env prefix NAME_",
        "port": "HTTP port (default: the first free one from 8081); metrics use port + 1000",
        "dry_run": "validate and print what would be written and run; change nothing",
    },
)
def new_service(c: Context, name: str, port: int = 0, dry_run: bool = False) -> None:
    """Render a new service into services/NAME and register it (uv, nox, images, chart)."""
    from ops.core.runner import runner_for
    from ops.scaffold import new_service as scaffold

    scaffold.create(runner_for(c, dry_run=dry_run), name, port or None)
