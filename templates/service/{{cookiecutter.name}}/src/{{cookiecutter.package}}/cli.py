"""The ``{{ cookiecutter.name }}`` command: ``serve`` runs the service."""

from __future__ import annotations

import typer
from pydantic import ValidationError

app = typer.Typer(help=__doc__, no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Settings come from environment variables (see the README)."""


@app.command()
def serve() -> None:
    """Run the HTTP API and the metrics endpoint until SIGTERM."""
    from {{ cookiecutter.package }}.logging_setup import configure_logging
    from {{ cookiecutter.package }}.server import PortInUseError
    from {{ cookiecutter.package }}.server import serve as run
    from {{ cookiecutter.package }}.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid settings:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log)
    try:
        run(settings)
    except PortInUseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    """Console-script entry point."""
    app()
