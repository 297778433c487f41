"""The deployment targets, by direct import, and the dispatch ``invoke deploy`` uses.

Each target module (``ops.deploy.local``, ``compose``, ``kubernetes``, ``helm``, ``systemd``)
exports ``TARGET``, an :class:`ops.deploy.base.Target`. :func:`run` checks the target's
prerequisites (all of them, each with its fix) and hands over to its ``apply``; a dry run shows
the whole plan even where a prerequisite is missing, then exits 1 saying what is.
"""

from __future__ import annotations

from collections.abc import Mapping

from invoke.context import Context
from invoke.exceptions import Exit

from ops.deploy import compose, helm, kubernetes, local, systemd
from ops.deploy.base import Target
from ops.deploy.environments import ENVIRONMENTS, require

TARGETS: Mapping[str, Target] = {
    target.name: target
    for target in (local.TARGET, compose.TARGET, kubernetes.TARGET, helm.TARGET, systemd.TARGET)
}
__all__ = ["ENVIRONMENTS", "TARGETS", "down", "get", "run", "status"]


def get(name: str) -> Target:
    """The target called ``name``, or exit naming the choices."""
    if name not in TARGETS:
        raise Exit(f"unknown --target '{name}'; choose one of: {', '.join(TARGETS)}", code=1)
    return TARGETS[name]


def _dry(c: Context, dry_run: bool) -> bool:
    return dry_run or bool(c.config.get("run", {}).get("dry", False))


def run(c: Context, *, target: str, env: str, dry_run: bool) -> None:
    """Check ``target``'s prerequisites, then deploy ``env`` with it."""
    spec = get(target)
    require(env)
    dry = _dry(c, dry_run)
    problems = []
    for prerequisite in spec.prerequisites:
        problem = prerequisite.problem(c)
        print(f"prerequisite: {prerequisite.describe()}: {'ok' if problem is None else 'MISSING'}")
        if problem is not None:
            problems.append(problem)
    if problems and not dry:
        raise Exit(
            f"deploy --target {target} cannot start:\n  - " + "\n  - ".join(problems), code=1
        )
    if dry:
        spec.plan(c, env=env)
    else:
        spec.apply(c, env=env, dry_run=False)
    if problems:
        raise Exit(
            f"dry run of --target {target} shown above, but it could not run here:\n  - "
            + "\n  - ".join(problems),
            code=1,
        )


def status(c: Context, *, target: str) -> int:
    """Print the ``target`` deployment's state; 0 when it is up and ready, else non-zero."""
    return get(target).status(c)


def down(c: Context, *, target: str, dry_run: bool) -> None:
    """Remove the ``target`` deployment (its data stays)."""
    get(target).down(c, dry_run=_dry(c, dry_run))
