"""What every ``llm-optimizer-service`` command group shares: the consoles, the one way to fail
(a red ``error:`` line on stderr and a non-zero exit) and loading the settings or failing so."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from llm_optimizer_service.settings import Settings, SettingsError, load_settings

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise (``raise fail(...)``)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def settings_or_fail() -> Settings:
    """The effective settings, or exit 1 naming what is invalid."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(f"invalid settings: {exc}") from exc
