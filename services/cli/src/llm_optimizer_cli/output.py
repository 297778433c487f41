"""Rendering answers as a table (for people), JSON or YAML (for scripts)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render(
    data: Any,
    fmt: Format,
    *,
    columns: Sequence[str] = (),
    rows: list[dict[str, Any]] | None = None,
    title: str | None = None,
) -> None:
    """Print ``data``: JSON/YAML as is; a table of ``rows`` (default: data's keys) otherwise."""
    console = Console(soft_wrap=True)
    if fmt is Format.json:
        console.print_json(json.dumps(data, default=str))
        return
    if fmt is Format.yaml:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")
        return
    table = Table(title=title)
    if rows is None:
        table.add_column("field")
        table.add_column("value")
        for key, value in (data or {}).items():
            table.add_row(key, _cell(value))
    else:
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table)
