"""The interface every deployment target implements (one module per target in ``ops.deploy``).

A target is data plus four functions: ``apply`` deploys (or redeploys) an environment,
``plan`` is ``apply`` as a dry run (every command printed, nothing changed), ``status`` prints the
deployment's state and returns 0 when it is up and ready (else 3), ``down`` removes the deployment
but keeps its data. ``service_command`` says how to run ``llm-optimizer-service ARGS`` where the
target runs the service (``invoke db.*``, ``invoke health-check``). ``restart`` (optional)
restarts the running service in place the way the target does it, returning once it is ready
again (``invoke verify`` measures requests during it); a target without one says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from invoke.context import Context

from ops.deploy.prerequisites import Prerequisite


@dataclass(frozen=True)
class Invocation:
    """A command line and how to run it (env is added to the runner's environment)."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    service_command: Path | None = None  # local: the script that must exist


class Apply(Protocol):
    def __call__(self, c: Context, *, env: str, dry_run: bool) -> None: ...


class Status(Protocol):
    def __call__(self, c: Context) -> int: ...


class Down(Protocol):
    def __call__(self, c: Context, *, dry_run: bool) -> None: ...


class Restart(Protocol):
    def __call__(self, c: Context) -> None: ...


class ServiceCommand(Protocol):
    def __call__(
        self, c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
    ) -> Invocation: ...


@dataclass(frozen=True)
class Target:
    """One place the service can be deployed to."""

    name: str
    summary: str
    apply: Apply
    status: Status
    down: Down
    service_command: ServiceCommand
    prerequisites: tuple[Prerequisite, ...] = ()
    restart: Restart | None = None

    def plan(self, c: Context, *, env: str) -> None:
        """Print every step and command ``apply`` would run, and change nothing."""
        self.apply(c, env=env, dry_run=True)
