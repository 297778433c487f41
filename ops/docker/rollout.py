"""Rolling update of the optimizer replicas of a running Compose stack behind its reverse proxy.

``invoke deploy --target compose --env prod`` on a stack whose optimizer already runs replaces
its N replicas by M on the new image (M: the files' ``deploy.replicas``, ``OPTIMIZER_REPLICAS``)
without a failed request:

1. **migrate**: the new image's ``db upgrade`` (the ``migrate`` service, recreated and run to its
   exit; PostgreSQL's advisory lock keeps it from racing anything);
2. **scale out**: ``up --no-recreate --scale optimizer=N+M``: M new replicas on the new image
   beside the N old ones, which are left alone;
3. **ready**: every new replica is healthy and answers ``/health/ready`` with 200 (asked inside
   it); one that exits or is restarted fails the rollout at once;
4. **proxy**: Docker's DNS lists a replica under the service's name from the moment its
   container starts; nginx re-resolves that name every ``valid=`` seconds of its ``resolver``
   (infra/docker/proxy/nginx.conf), so waiting that long after the last new replica started
   means nginx sends to the new ones;
5. **stop the old**: each gets SIGTERM with the service's stop grace period; it drains (the
   requests in flight finish, queued decisions are written) and exits 0. Until it has exited,
   Docker's DNS still lists it: a request nginx then sends it is refused before it was passed
   (retried on another replica), and the old container's address stays unanswered for up to
   ``valid=`` seconds after it exited (nginx's ``proxy_connect_timeout`` bounds that wait, then
   it retries elsewhere). nginx retries a POST whose upstream failed (``non_idempotent``):
   feedback is idempotent per decision id, and a decide is retried only when it failed before
   the replica answered it (see docs/operations.md for what that means);
6. **check**: exactly M replicas run, all on the new image.

A failure in steps 2 or 3 removes the new replicas and leaves the old ones serving. A dry run prints
the plan and every command, and touches nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.exceptions import Exit

from ops.core.project import HTTP_PORT, INFRA_DIR
from ops.core.runner import Runner

if TYPE_CHECKING:
    from docker.models.containers import Container

    from ops.docker.compose import Stack

SERVICE = "optimizer"
MIGRATE = "migrate"
NGINX_CONF = INFRA_DIR / "docker" / "proxy" / "nginx.conf"
READY_TIMEOUT_S = 120.0
_RESOLVER_VALID = re.compile(r"^\s*resolver\s[^;]*\bvalid=(\d+)s\b", re.MULTILINE)
# Asked inside the replica: the host may not reach the Compose network (and the replicas publish
# nothing). The image's Python, standard library only.
READY_PROBE = (
    "python3",
    "-c",
    "import sys, urllib.request as r; "
    f"sys.exit(r.urlopen('http://127.0.0.1:{HTTP_PORT}/health/ready', timeout=2).status != 200)",
)


def proxy_resolve_interval(conf: Path = NGINX_CONF) -> float:
    """Seconds nginx keeps a resolved service name (its ``resolver ... valid=Ns``)."""
    match = _RESOLVER_VALID.search(conf.read_text())
    if match is None:
        raise Exit(f"{conf} has no `resolver ... valid=Ns` line; the rollout needs one", code=1)
    return float(match.group(1))


@dataclass
class Rollout:
    """What a rollout did: the replicas before and after, their images, and each step's time."""

    image_id: str
    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    old_exit_codes: dict[str, int] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds

    def summary(self) -> str:
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.steps.items())
        return (
            f"rolled {len(self.old)} replica(s) onto {self.image_id[:19]}: "
            f"{', '.join(self.old)} -> {', '.join(self.new)} ({steps})"
        )


def replicas(project: str, service: str = SERVICE, *, running: bool = True) -> list[Container]:
    """The containers of ``service`` in the Compose ``project`` (only the running ones unless
    ``running`` is false), oldest first."""
    from ops.docker import engine

    api = engine.client()
    labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
    filters: dict[str, str | list[str] | bool] = {"label": labels}
    if running:
        filters["status"] = "running"
    found = api.containers.list(all=not running, filters=filters)
    return sorted(found, key=lambda c: str(c.attrs["Created"]))


def is_ready(container: Container) -> bool:
    """True when the replica answers ``/health/ready`` with 200."""
    import docker.errors

    try:
        code, _ = container.exec_run(list(READY_PROBE))
    except docker.errors.APIError:  # not running (any more)
        return False
    return code == 0


def _ready_and_healthy(container: Container) -> bool:
    """True once the replica is ready and Docker calls it healthy; Exit as soon as it has
    exited or been restarted (new code that cannot serve fails fast, not at a timeout)."""
    container.reload()
    state = container.attrs["State"]
    restarts = int(container.attrs.get("RestartCount") or 0)
    if restarts:
        raise Exit(f"new replica {container.name} exited and was restarted instead of serving", 1)
    if state["Status"] in ("exited", "dead"):
        raise Exit(
            f"new replica {container.name} exited (code {state['ExitCode']}) instead of serving",
            code=1,
        )
    health = (state.get("Health") or {}).get("Status", "healthy")  # no healthcheck: running
    return health == "healthy" and is_ready(container)


def _wait_ready(containers: list[Container], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(containers)
    while waiting:
        waiting = [c for c in waiting if not _ready_and_healthy(c)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            names = ", ".join(str(c.name) for c in waiting)
            raise Exit(f"new replica(s) {names} not ready within {timeout:.0f} s", code=1)
        time.sleep(0.5)


def _tail(container: Container, lines: int = 30) -> str:
    return str(container.logs(tail=lines).decode(errors="replace"))


def _remove(containers: list[Container]) -> None:
    from ops.docker import commands

    for container in containers:
        commands.remove(container)


def configured_replicas(runner: Runner, stack: Stack, env: Mapping[str, str]) -> int:
    """How many optimizer replicas the stack's files ask for (``deploy.replicas``, e.g.
    compose.prod.yml's ``OPTIMIZER_REPLICAS``; 1 when unset). Read even in a dry run."""
    import json

    model = json.loads(runner.output(stack.argv("config", "--format", "json"), env=dict(env)))
    replicas = (model["services"][SERVICE].get("deploy") or {}).get("replicas")
    return int(replicas) if replicas is not None else 1


def plan(stack: Stack, replicas_now: int, wanted: int) -> list[str]:
    """The steps of a rollout from ``replicas_now`` replicas to ``wanted`` new ones, in words."""
    n = replicas_now
    valid = proxy_resolve_interval()
    return [
        f"migrate: run `{MIGRATE}` on {stack.image} (db upgrade) to its exit",
        f"scale out: {wanted} new {SERVICE} replica(s) on {stack.image} beside the {n} running",
        f"ready: wait until each new replica is healthy and answers /health/ready "
        f"(≤ {READY_TIMEOUT_S:.0f} s; one that exits fails the rollout)",
        f"proxy: wait {valid + 1:.0f} s after the last one started (nginx re-resolves every "
        f"{valid:.0f} s)",
        f"stop the old: SIGTERM each of the {n} old replica(s) (it drains), then remove it",
        f"check: {wanted} replica(s) run, all on the new image",
    ]


def roll(
    runner: Runner, stack: Stack, *, variables: Mapping[str, str] | None = None
) -> Rollout | None:
    """Replace the running replicas of ``stack``'s optimizer by as many on ``stack.image``
    (steps in the module's docstring). None in a dry run (the plan and commands are printed)."""
    from ops.docker import commands

    env = {"OPTIMIZER_IMAGE": stack.image, **(variables or {})}
    old = replicas(stack.project)
    n = len(old)
    if n == 0:
        raise Exit(
            f"no running {SERVICE} replica in project {stack.project} to roll; "
            "start the stack first: invoke deploy --target compose --env prod",
            code=1,
        )
    wanted = configured_replicas(runner, stack, env)
    for number, step in enumerate(plan(stack, n, wanted), 1):
        print(f"rollout {number}/6 {step}")
    migrate = ["up", "--no-deps", "--force-recreate", "--no-color", "--exit-code-from", MIGRATE]
    migrate_argv = stack.argv(*migrate, MIGRATE)
    scale = ["up", "--detach", "--no-deps", "--no-recreate", "--scale", f"{SERVICE}={n + wanted}"]
    scale_argv = stack.argv(*scale, SERVICE)
    if runner.dry_run:
        runner.run(migrate_argv, env=env)
        runner.run(scale_argv, env=env)
        return None
    report = Rollout(image_id=str(commands.image_attrs(stack.image)["Id"]))
    report.old = [str(c.name) for c in old]
    began = time.monotonic()
    runner.run(
        migrate_argv, env=env, hint="the migration failed; nothing was rolled, the old replicas run"
    )
    report.steps["migrate"] = time.monotonic() - began

    began = time.monotonic()
    old_ids = {c.id for c in old}
    try:
        runner.run(scale_argv, env=env, hint="the new replicas did not start")
        new = [c for c in replicas(stack.project) if c.id not in old_ids]
        if len(new) != wanted:
            raise Exit(f"expected {wanted} new replica(s), found {len(new)}", code=1)
        _wait_ready(new)
    except Exit as failure:
        stray = [c for c in replicas(stack.project, running=False) if c.id not in old_ids]
        logs = "\n".join(f"--- {c.name}\n{_tail(c)}" for c in stray)
        _remove(stray)
        raise Exit(
            f"{failure.message}; removed the new replica(s), the {n} old one(s) still serve\n"
            f"{logs}",
            code=1,
        ) from None
    report.new = [str(c.name) for c in new]
    report.steps["scale out + ready"] = time.monotonic() - began

    began = time.monotonic()
    last_start = max(_started_at(c) for c in new)
    settle = proxy_resolve_interval() + 1 - (time.time() - last_start)
    if settle > 0:
        time.sleep(settle)
    report.steps["proxy"] = time.monotonic() - began

    began = time.monotonic()
    for container in old:
        grace = container.attrs["Config"].get("StopTimeout") or 10
        container.stop(timeout=int(grace))
        container.reload()
        code = int(container.attrs["State"]["ExitCode"])
        report.old_exit_codes[str(container.name)] = code
        if code != 0:
            print(
                f"warning: {container.name} exited with code {code}, not after a clean drain; "
                f"its log ends:\n{_tail(container)}"
            )
        commands.remove(container)
    report.steps["stop old"] = time.monotonic() - began

    now = replicas(stack.project)
    wrong = [str(c.name) for c in now if c.attrs["Image"] != report.image_id]
    if len(now) != wanted or wrong:
        raise Exit(
            f"after the rollout {len(now)} replica(s) run (expected {wanted}); "
            f"not on the new image: {', '.join(wrong) or 'none'}",
            code=1,
        )
    print(report.summary())
    return report


def _started_at(container: Container) -> float:
    """When the container started (epoch seconds)."""
    from datetime import datetime

    container.reload()
    stamp = str(container.attrs["State"]["StartedAt"])
    # Docker's nanoseconds don't fit fromisoformat on 3.11: keep microseconds.
    head, _, rest = stamp.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00").timestamp()
