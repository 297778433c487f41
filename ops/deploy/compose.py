"""``invoke deploy --target compose``: the Compose stack in infra/docker on this Docker engine.

Which stack: the ``llm_optimizer.compose`` config (project, env, standins) and the service image
(``registry``/``image_tag``), read by ``ops.docker.compose.Stack``. ``apply`` builds the service
image and brings the stack up (``compose.services``, default all), waiting until every service is
running and healthy; with ``--env prod`` on a stack whose optimizer already runs it rolls the
replicas onto the new image instead, one set beside the other behind the proxy, so no request
fails (``ops.docker.rollout``). ``restart`` of a prod stack is the same rollout without a build.
``down`` removes containers and network and keeps the volumes (the data).

What ``invoke verify --target compose`` talks to (:func:`reach`, :func:`scrape_replicas`) is
read from the running containers: the URL is the port the proxy (prod) or the optimizer (dev)
publishes for 8080; the API key is the first plain-text one of the file mounted as the replicas'
``/run/secrets/api_keys`` (prod) or of their ``LLM_OPTIMIZER_AUTH__API_KEYS`` (dev); the
metrics are scraped inside each replica (prod publishes no metrics port).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context

from ops.core import project
from ops.core.runner import Runner, runner_for
from ops.deploy.base import Invocation, Target
from ops.deploy.environments import require
from ops.deploy.local import plain_key
from ops.deploy.prerequisites import Prerequisite

if TYPE_CHECKING:  # the Docker SDK loads on use, so `invoke --list` stays fast
    from docker.models.containers import Container

    from ops.docker import compose as compose_stack


def stack(c: Context, *, standins: bool = False) -> compose_stack.Stack:
    """The stack the ``llm_optimizer`` config names (``--standins`` adds compose.ci.yml)."""
    from ops.docker import compose as compose_stack

    return compose_stack.Stack.from_config(c.config.get("llm_optimizer", {}), standins=standins)


def up(
    c: Context,
    *,
    env: str,
    dry_run: bool,
    wait: bool = True,
    services: Sequence[str] = (),
    standins: bool = False,
) -> None:
    """Build the service image and start ``services`` (default: all) of the stack for ``env``,
    waiting until each is running and healthy when ``wait``."""
    from ops.docker import compose as compose_stack

    require(env, compose_stack.ENVIRONMENTS)
    target = stack(c, standins=standins)
    compose_stack.up(
        runner_for(c, dry_run=dry_run),
        env=env,
        project=target.project,
        image=target.image,
        standins=target.standins,
        wait=wait,
        services=services or target.services,
    )


def _running_replicas(project_name: str) -> int:
    """How many optimizer replicas run in the project (0 too when no engine answers)."""
    from ops.docker import engine, rollout

    if not engine.status().answering:
        return 0
    return len(rollout.replicas(project_name))


def apply(c: Context, *, env: str, dry_run: bool) -> None:
    """Build the image and bring the stack up for ``env``, healthy; a running prod stack's
    optimizer replicas are rolled onto the new image with no failed request."""
    from ops.docker import compose as compose_stack
    from ops.docker import images as docker_images
    from ops.docker import rollout
    from ops.docker.build_context import IMAGES

    require(env, compose_stack.ENVIRONMENTS)
    target = dataclasses.replace(stack(c), env=env)
    running = _running_replicas(target.project) if env == "prod" else 0
    if not running:
        up(c, env=env, dry_run=dry_run)
        return
    runner = runner_for(c, dry_run=dry_run)
    print(f"compose prod: {running} optimizer replica(s) run; rolling them onto {target.image}")
    docker_images.build(runner, IMAGES["service"], tags=[target.image])
    rollout.roll(runner, target)


def status(c: Context) -> int:
    """The stack's containers; 0 when every one runs and none is unhealthy, else 3."""
    from ops.docker import compose as compose_stack

    name = stack(c).project
    rows = compose_stack.ps(Runner(ctx=c, echo=False), project=name)
    if not rows:
        print(f"compose: no containers in project {name}; run: invoke deploy --target compose")
        return 3
    bad = 0
    for row in rows:
        state, health = str(row.get("State", "")), str(row.get("Health") or "")
        bad += state != "running" or health not in ("", "healthy")
        print(f"{row.get('Service', ''):20} {state:10} {health or '-':10} {row.get('Name')}")
    return 3 if bad else 0


def down(c: Context, *, dry_run: bool) -> None:
    """Stop and remove the stack's containers and network; the volumes (data) stay."""
    from ops.docker import compose as compose_stack

    target = stack(c)
    compose_stack.down(
        runner_for(c, dry_run=dry_run), project=target.project, standins=target.standins
    )


def restart(c: Context) -> None:
    """prod: the rollout of ``apply`` onto the image the stack names, without building it (no
    failed request). dev: recreate the ``optimizer`` service's containers (``up
    --force-recreate --no-deps``) and wait until they are healthy; the image is not rebuilt."""
    from ops.docker import rollout

    target = stack(c)
    if target.env == "prod":
        rollout.roll(Runner(ctx=c), target)
        return
    Runner(ctx=c).run(
        target.argv("up", "--detach", "--force-recreate", "--no-deps", "--wait", "optimizer"),
        env={"OPTIMIZER_IMAGE": target.image},
        hint="recreating the optimizer failed; see `uv run invoke compose.logs`",
    )


def restart_not_guaranteed(c: Context) -> str:
    """Why a restart of this stack may fail requests ("" for prod: the rollout keeps serving)."""
    if stack(c).env == "prod":
        return ""
    return (
        "not promised on the dev stack (one optimizer, no proxy: its port closes while the "
        "container is recreated; only --env prod rolls with no failed request)"
    )


def service_command(
    c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
) -> Invocation:
    """In the running ``optimizer`` container (``exec``), or a throwaway one of the stack
    (``run --rm --no-deps migrate``: the optimizer's image, settings and network) with the
    given bind mounts."""
    target = stack(c)
    if running:
        argv = target.argv("exec", "-T", "optimizer", project.SERVICE_COMMAND, *args)
    else:
        volumes = [f"--volume={host}:{inside}" for host, inside in mounts.items()]
        argv = target.argv("run", "--rm", "--no-deps", "-T", *volumes, "migrate", *args)
    return Invocation(argv, {"OPTIMIZER_IMAGE": target.image})


API_PORT = "8080/tcp"  # the optimizer's (and the prod proxy's) HTTP port inside the container
METRICS_PORT = 9090  # the optimizer's metrics port inside the container (the image's default)
ANY_IPV4 = "0.0.0.0"  # noqa: S104 (what Docker reports, not a bind)
KEYS_SECRET = "/run/secrets/api_keys"  # noqa: S105 (a path, not a secret)
# GET the replica's own /metrics with the image's python3 (the image has no curl or wget).
_SCRAPE = (
    "import sys, urllib.request as r; "
    "sys.stdout.write(r.urlopen('http://127.0.0.1:%d/metrics', timeout=10).read().decode())"
)


@dataclass(frozen=True)
class Reached:
    """Where the running stack answers and the key it accepts; ``why_*`` say why one is
    missing (empty when found)."""

    url: str = ""
    api_key: str = ""
    why_no_url: str = ""
    why_no_key: str = ""


def _published(container: Container, port: str) -> str:
    """``http://HOST:PORT`` the container publishes ``port`` on, or ``""``."""
    bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(port) or []
    for binding in bindings:
        host = binding.get("HostIp") or ANY_IPV4
        if ":" not in host:  # an IPv4 binding (every address is reached on 127.0.0.1)
            return f"http://{'127.0.0.1' if host == ANY_IPV4 else host}:{binding['HostPort']}"
    return ""


def _key_of(container: Container) -> tuple[str, str]:
    """The first plain-text API key the replica accepts, or ``""`` and why not."""
    attrs = container.attrs
    for mount in attrs.get("Mounts") or []:
        if mount.get("Destination") == KEYS_SECRET:
            source = Path(str(mount["Source"]))
            try:
                key = plain_key(source.read_text())
            except OSError as error:
                return "", f"cannot read the api_keys secret {source}: {error.strerror}"
            why = f"the api_keys secret {source} holds no plain-text key (--api-key-file)"
            return key or "", "" if key else why
    for variable in attrs["Config"].get("Env") or []:
        name, _, value = str(variable).partition("=")
        if name == "LLM_OPTIMIZER_AUTH__API_KEYS":
            key = plain_key(value.replace(",", "\n"))
            return key or "", "" if key else "LLM_OPTIMIZER_AUTH__API_KEYS holds no plain key"
    return "", "the optimizer has no api_keys secret and no LLM_OPTIMIZER_AUTH__API_KEYS"


def reach(c: Context) -> Reached:
    """The running stack's URL (through the proxy when one runs) and an API key it accepts."""
    from ops.docker import engine, rollout

    name = stack(c).project
    if not engine.status().answering:
        why = "no Docker engine answers (invoke docker.engine --start)"
        return Reached(why_no_url=why, why_no_key=why)
    replicas = rollout.replicas(name)
    if not replicas:
        why = f"no optimizer runs in compose project {name} (invoke deploy --target compose)"
        return Reached(why_no_url=why, why_no_key=why)
    proxies = rollout.replicas(name, "proxy")
    front = proxies[0] if proxies else replicas[0]
    url = _published(front, API_PORT)
    key, why_no_key = _key_of(replicas[0])
    service = "proxy" if proxies else "optimizer"
    return Reached(url, key, "" if url else f"the {service} publishes no {API_PORT}", why_no_key)


def scrape_replicas(c: Context) -> dict[str, str]:
    """Each running optimizer replica's ``/metrics``, read inside it: container name → text."""
    from ops.docker import rollout

    scraped = {}
    for replica in rollout.replicas(stack(c).project):
        code, out = replica.exec_run(["python3", "-c", _SCRAPE % METRICS_PORT])
        raw = out if isinstance(out, bytes) else b"".join(out)  # bytes: no stream=True
        text = raw.decode(errors="replace")
        if code != 0:
            raise OSError(f"{replica.name}: /metrics inside it failed: {text.strip()[-200:]}")
        scraped[str(replica.name)] = text
    if not scraped:
        raise OSError(f"no optimizer runs in compose project {stack(c).project}")
    return scraped


TARGET = Target(
    "compose",
    "Docker Compose stack (infra/docker)",
    apply=apply,
    status=status,
    down=down,
    service_command=service_command,
    prerequisites=(Prerequisite("tool", "docker"), Prerequisite("docker-engine")),
    restart=restart,
)
