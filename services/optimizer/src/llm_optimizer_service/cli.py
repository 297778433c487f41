"""``llm-optimizer-service``: serve, db, config, health, version, simulate."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from llm_optimizer_service import __version__
from llm_optimizer_service.backup.cli import backup_app
from llm_optimizer_service.cli_support import err, fail, out, settings_or_fail
from llm_optimizer_service.safety import Review, review
from llm_optimizer_service.settings import (
    DEFAULT_HTTP_PORT,
    Settings,
    masked_dump,
    unknown_env_vars,
)

app = typer.Typer(
    name="llm-optimizer-service",
    help="The LLM Auto Optimizer service. Settings come from LLM_OPTIMIZER_* variables and the "
    "optional file named by LLM_OPTIMIZER_CONFIG (see docs/configuration.md).",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
config_app = typer.Typer(help="Inspect and check the effective settings.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(backup_app, name="backup")

# --- serve ----------------------------------------------------------------------------------


def _checked(settings: Settings, refusal: str) -> Review:
    """The start-up checks shared by serve and config validate (safety.review): exit 1 listing
    what this environment refuses; in development, warn loudly about what production would."""
    found = review(settings)
    refused = found.refused(settings.is_production)
    if refused:
        raise fail(f"{refusal}:\n  " + "\n  ".join(refused))
    if found.unsafe:
        lines = "\n".join(f"  - {problem}" for problem in found.unsafe)
        err.print(
            "[bold yellow]WARNING:[/] development mode (LLM_OPTIMIZER_ENVIRONMENT=development) "
            "runs with what production refuses:\n"
            f"{escape(lines)}\n"
            "Never expose this instance; fix these before setting "
            "LLM_OPTIMIZER_ENVIRONMENT=production (docs/configuration.md).",
            highlight=False,
            soft_wrap=True,
        )
    return found


@app.command()
def serve() -> None:
    """Run the REST and gRPC APIs and the metrics endpoint until SIGTERM (then drain, exit 0)."""
    from llm_optimizer_service.logging_setup import configure_logging
    from llm_optimizer_service.server import run, serve
    from llm_optimizer_service.storage import migrations

    settings = settings_or_fail()
    _checked(settings, f"{'production' if settings.is_production else 'serve'} refuses to start")
    newer = migrations.newer_schema_problem(settings.database_url)
    if newer:
        raise fail(f"serve refuses to start: {newer}")
    configure_logging(settings.log)
    raise typer.Exit(run(serve(settings), settings))


# --- db -------------------------------------------------------------------------------------

SqlOption = Annotated[bool, typer.Option("--sql", help="print the SQL instead of running it")]


def _migrate(action: str, *args: Any, **kwargs: Any) -> None:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from llm_optimizer_service.logging_setup import configure_logging
    from llm_optimizer_service.storage import migrations

    settings = settings_or_fail()
    configure_logging(settings.log)
    try:
        printed = getattr(migrations, action)(settings.database_url, *args, **kwargs)
    except migrations.UnknownRevisionError as exc:
        raise fail(f"db {action}: {exc}") from exc
    except CommandError as exc:
        raise fail(f"db {action}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise fail(f"db {action}: database error: {exc}") from exc
    if printed:
        sys.stdout.write(printed)


@db_app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    to: Annotated[
        str | None, typer.Option("--to", help="target revision (same as the argument)")
    ] = None,
    sql: SqlOption = False,
) -> None:
    """Migrate the schema up (to head by default), under an advisory lock on PostgreSQL."""
    _migrate("upgrade", to or revision, sql=sql)


@db_app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")] = "-1",
    sql: SqlOption = False,
) -> None:
    """Migrate the schema down (one revision by default)."""
    _migrate("downgrade", revision, sql=sql)


@db_app.command()
def current() -> None:
    """Print the schema revision the database is at."""
    _migrate("current")


@db_app.command()
def history() -> None:
    """List the migration revisions shipped with this release."""
    _migrate("history")


@db_app.command()
def check() -> None:
    """Exit non-zero unless the schema is at head and matches the models."""
    _migrate("check")


@db_app.command()
def repair(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what is wrong; change nothing")
    ] = False,
) -> None:
    """Find stored state this release cannot use (the service quarantines it) and rebuild
    unreadable arm statistics from the decision and feedback logs. Exit 0 when nothing is left
    to fix, 1 otherwise (with --dry-run: when anything needs fixing)."""
    from sqlalchemy.exc import SQLAlchemyError

    from llm_optimizer_service import repair as repairs
    from llm_optimizer_service.storage.db import make_engine

    settings = settings_or_fail()
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        repaired: list[repairs.Repaired] = []
        if dry_run:
            left = repairs.find_problems(engine)
        else:
            repaired, left = repairs.repair(engine)
    except SQLAlchemyError as exc:
        raise fail(f"db repair: database error: {exc}") from exc
    finally:
        engine.dispose()
    for done in repaired:
        out.print(
            f"repaired {done.workload}/{done.arm}: rebuilt from {done.decisions} decisions and "
            f"{done.feedback} feedback ({done.skipped} feedback with refused values skipped)",
            highlight=False,
        )
    for finding in left:
        where = finding.workload + (f"/{finding.arm}" if finding.arm else "")
        out.print(f"{where}: {finding.problem} (fix: {finding.fix})", highlight=False)
    if not repaired and not left:
        out.print("nothing to repair: all stored state is usable", highlight=False)
    if left:
        raise typer.Exit(1)


# --- config ---------------------------------------------------------------------------------


@config_app.command("show")
def config_show(
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json")] = "yaml",
) -> None:
    """Print the effective settings, secrets masked."""
    data = masked_dump(settings_or_fail())
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        raise fail(f"unknown output format {output!r}; use yaml or json", 2)


@config_app.command("validate")
def config_validate() -> None:
    """Check the settings (and, in production, refuse defaults); non-zero naming the key."""
    settings = settings_or_fail()
    for name in unknown_env_vars():
        err.print(f"[yellow]warning:[/] {name} is not a setting (a typo?); it is ignored")
    found = _checked(settings, "invalid settings")
    out.print(
        f"settings OK (environment={settings.environment}, api keys={found.keys}, "
        f"database={'sqlite' if settings.database.url is None else 'external'})",
        highlight=False,
    )


# --- health ---------------------------------------------------------------------------------


@app.command()
def health(
    url: Annotated[
        str | None,
        typer.Option(help="base URL of the service (default: from server.host/http_port)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    timeout: Annotated[float, typer.Option(help="seconds per check")] = 3.0,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="liveness only (GET /health/live), exit 0 or 1: the container HEALTHCHECK",
        ),
    ] = False,
) -> None:
    """Check the running service over HTTP and gRPC, and the database, Redis and Kafka directly.

    Exit 0 healthy, 1 unhealthy, 2 degraded."""
    from llm_optimizer_service.healthcheck import run_checks, run_live_check

    settings = settings_or_fail()
    result = (run_live_check if live else run_checks)(settings, url, timeout)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for name, check_result in result["checks"].items():
            colour = {"ok": "green", "degraded": "yellow"}.get(check_result["status"], "red")
            out.print(
                f"{name:<10} [{colour}]{check_result['status']}[/] "
                f"{check_result.get('detail', '')}",
                highlight=False,
            )
        out.print(f"overall    {result['status']}", highlight=False)
    raise typer.Exit({"healthy": 0, "unhealthy": 1, "degraded": 2}[result["status"]])


# --- version --------------------------------------------------------------------------------


@app.command()
def version(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Print the version, git sha and build date (the last two are baked in at image build)."""
    settings = settings_or_fail()
    data = {"version": __version__, "git_sha": settings.git_sha, "build_date": settings.build_date}
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(
            f"llm-optimizer-service {data['version']} "
            f"(git {data['git_sha']}, built {data['build_date']})",
            highlight=False,
        )


# --- simulate -------------------------------------------------------------------------------


@app.command()
def simulate(
    url: Annotated[
        str, typer.Option(help="base URL of the service")
    ] = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LLM_OPTIMIZER_API_KEY",
            help="API key (from LLM_OPTIMIZER_API_KEY; never pass real keys on a shared host)",
        ),
    ] = None,
    workload: Annotated[str, typer.Option(help="workload name to create/use")] = "simulation",
    requests: Annotated[int, typer.Option(min=1, help="decisions to make")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="parallel clients")] = 8,
    seed: Annotated[int, typer.Option(help="random seed of the synthetic outcomes")] = 7,
    strategy: Annotated[
        str, typer.Option(help="strategy of a newly created workload")
    ] = "thompson",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Drive a synthetic workload through the API (decide then feedback) and print a summary."""
    from llm_optimizer_service.simulate import SimulationError, run_simulation

    try:
        summary = asyncio.run(
            run_simulation(url, api_key, workload, requests, concurrency, seed, strategy)
        )
    except SimulationError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"simulation of {requests} requests on {workload!r}")
    for column in ("arm", "true quality", "true cost", "chosen", "share"):
        table.add_column(column)
    for arm in summary["arms"]:
        table.add_row(
            arm["name"],
            f"{arm['true_quality']:.2f}",
            f"{arm['true_cost_usd']:.4f}",
            str(arm["chosen"]),
            f"{arm['share']:.1%}",
        )
    out.print(table)
    out.print(
        f"best arm (report): {summary['best_arm']}  |  oracle: {summary['oracle_arm']}  |  "
        f"mean quality {summary['mean_quality']:.3f}  |  "
        f"{summary['requests_per_second']:.0f} req/s",
        highlight=False,
    )


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
