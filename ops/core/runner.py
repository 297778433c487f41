"""The one command runner every task, nox helper and test uses for external tools.

It builds argv as lists (never shell strings with pasted values), prints each command before
running it, honours dry-run, and turns a missing tool into an error that names the tool and the
exact command that installs it (from the catalogue in ``ops.core.tools``).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.runners import Result

from ops.core import tools
from ops.core.tools import ToolMissingError

__all__ = ["CommandFailedError", "Runner", "ToolMissingError", "runner_for"]


class CommandFailedError(Exit):
    """An external command exited non-zero."""

    def __init__(self, argv: Sequence[str], code: int, hint: str = "") -> None:
        self.argv = list(argv)
        message = f"command failed with exit code {code}: {shlex.join(argv)}"
        super().__init__(f"{message}\n{hint}" if hint else message, code or 1)


@dataclass
class Runner:
    """Runs external commands through an Invoke context.

    ``dry_run`` prints what would run and returns ``None`` instead of running it. ``echo``
    controls whether the command line is printed first (always true for dry runs).
    """

    ctx: Context = field(default_factory=Context)
    dry_run: bool = False
    echo: bool = True

    def resolve(self, argv: Sequence[str]) -> list[str]:
        """argv with argv[0] replaced by the tool's absolute path; raises ToolMissingError."""
        if not argv:
            raise ValueError("empty command")
        return [str(tools.require(argv[0])), *argv[1:]]

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = True,
        capture: bool = False,
        hint: str = "",
        stdin: str | None = None,
        timeout: float | None = None,
    ) -> Result | None:
        """Run ``argv``; raise CommandFailedError on a non-zero exit when ``check`` is true.

        With ``check=False`` the caller must look at ``result.exited``.
        """
        args = [os.fspath(a) for a in argv]
        shown = shlex.join(args)
        if cwd is not None:
            shown = f"(cd {shlex.quote(os.fspath(cwd))} && {shown})"
        if self.dry_run:
            print(f"[dry-run] {shown}", file=sys.stderr, flush=True)
            return None
        resolved = self.resolve(args)
        if self.echo:
            print(f"+ {shown}", file=sys.stderr, flush=True)
        kwargs: dict[str, object] = {
            "warn": True,
            "hide": capture,
            # Catalogued tools that call other tools (checkov → helm, docker → its compose
            # plugin) find the catalogue's copies first.
            "env": {"PATH": tools.search_path(), **(env or {})},
            "in_stream": False,
            "timeout": timeout,
        }
        if stdin is not None:
            import io

            kwargs["in_stream"] = io.StringIO(stdin)
        command = shlex.join(resolved)
        if cwd is not None:
            with self.ctx.cd(os.fspath(cwd)):
                result = self.ctx.run(command, **kwargs)
        else:
            result = self.ctx.run(command, **kwargs)
        assert result is not None
        if check and result.exited != 0:
            detail = hint
            if capture and result.stderr.strip():
                detail = f"{result.stderr.strip()}\n{hint}".strip()
            raise CommandFailedError(args, result.exited, detail)
        return result

    def output(self, argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
        """Run a read-only query and return its stdout, stripped. Runs even in dry-run mode."""
        previous = self.dry_run
        self.dry_run = False
        try:
            result = self.run(argv, capture=True, **kwargs)  # type: ignore[arg-type]
        finally:
            self.dry_run = previous
        assert result is not None
        return result.stdout.strip()


def runner_for(ctx: Context, *, dry_run: bool = False) -> Runner:
    """A Runner bound to an Invoke context; ``invoke --dry`` also makes it a dry run."""
    dry = dry_run or bool(ctx.config.get("run", {}).get("dry", False))
    return Runner(ctx=ctx, dry_run=dry)
