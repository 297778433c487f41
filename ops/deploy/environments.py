"""The deployment environments (``invoke deploy --env``) and the service settings each implies.

The one source of the environment names: each target maps them to its own files (compose files,
chart values, a systemd drop-in) and refuses any other name through :func:`require`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from invoke.exceptions import Exit

from ops.core import project


@dataclass(frozen=True)
class Environment:
    """A deployment environment and the service settings it implies (contract names)."""

    name: str
    summary: str
    service_settings: Mapping[str, str]


DEV = Environment(
    "dev",
    "development: readable logs; development conveniences on",
    {
        project.env("environment"): "development",
        project.env("log", "level"): "INFO",
        project.env("log", "json"): "false",
    },
)
PROD = Environment(
    "prod",
    "production: JSON logs; the service refuses to start without API keys or with default secrets",
    {
        project.env("environment"): "production",
        project.env("log", "level"): "INFO",
        project.env("log", "json"): "true",
    },
)
ENVIRONMENTS: Mapping[str, Environment] = {env.name: env for env in (DEV, PROD)}


def require(name: str, allowed: Iterable[str] = ENVIRONMENTS, *, code: int = 1) -> Environment:
    """The environment called ``name``, or exit naming the choices."""
    choices = [env for env in allowed if env in ENVIRONMENTS]
    if name not in choices:
        raise Exit(f"unknown environment '{name}'; choose one of: {', '.join(choices)}", code=code)
    return ENVIRONMENTS[name]
