"""The Compose stacks in infra/docker: which files make which environment, and how to drive them.

- ``dev``: ``compose.yml`` (the development stack);
- ``prod``: ``compose.yml`` + ``compose.prod.yml`` (hardened, secrets from files, replicas behind
  a reverse proxy; its required settings are ``${VAR:?message}`` and must come from the caller);
- ``standins=True`` adds ``compose.ci.yml``: local stand-ins for the development stack's images
  (Debian packages; kafka's binary from the tools cache, built by ``ops.docker.standins`` before
  ``compose up``), for machines (like CI here) that can't pull images; for ``prod`` also
  ``compose.ci.prod.yml``, the reverse proxy's stand-in (Debian's nginx).

Interpolation variables (host ports, ``OPTIMIZER_IMAGE``, ...) are passed in the environment of
the ``docker compose`` process; none of them reaches the optimizer as a setting.
``invoke deploy --target compose`` is ``ops.deploy.compose``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from ops.core.project import INFRA_DIR, PROJECT, SERVICE_IMAGE
from ops.core.runner import Runner
from ops.docker import commands
from ops.docker import images as docker_images
from ops.docker import standins as standins_images
from ops.docker.build_context import IMAGES

COMPOSE_DIR = INFRA_DIR / "docker"
BASE_FILE = COMPOSE_DIR / "compose.yml"
PROD_FILE = COMPOSE_DIR / "compose.prod.yml"
CI_FILE = COMPOSE_DIR / "compose.ci.yml"
CI_PROD_FILE = COMPOSE_DIR / "compose.ci.prod.yml"
ENVIRONMENTS: Mapping[str, tuple[Path, ...]] = {
    "dev": (BASE_FILE,),
    "prod": (BASE_FILE, PROD_FILE),
}
PROFILES: tuple[str, ...] = ("tools",)
WAIT_TIMEOUT_S = 180


# What production's ${VAR:?message} settings are set to when only the files' validity is
# checked (`compose config`); a real production deployment must provide its own values.
PROD_PLACEHOLDERS: Mapping[str, str] = {
    "OPTIMIZER_IMAGE": "registry.example.com/llm-optimizer-service:0.0.0",
    "OPTIMIZER_DATABASE_URL_FILE": "/run/placeholder/database_url",
    "OPTIMIZER_REDIS_URL_FILE": "/run/placeholder/redis_url",
    "OPTIMIZER_API_KEYS_FILE": "/run/placeholder/api_keys",
    "POSTGRES_PASSWORD_FILE": "/run/placeholder/postgres_password",
    "GRAFANA_ADMIN_PASSWORD_FILE": "/run/placeholder/grafana_admin_password",
    "POSTGRES_USER": "optimizer",
    "POSTGRES_DB": "optimizer",
}


@dataclass(frozen=True)
class Stack:
    """The stack the tasks drive, from the ``llm_optimizer`` config: ``compose.project``,
    ``compose.env``, ``compose.standins`` and ``compose.services`` (what ``deploy`` starts; empty:
    every service), and the service image (``registry``/``image_tag``)."""

    project: str
    env: str
    standins: bool
    image: str
    services: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, standins: bool = False) -> Stack:
        compose = dict(config.get("compose", {}))
        env = str(compose.get("env", "dev"))
        files(env)  # an unknown environment fails here, naming the choices
        services = compose.get("services") or ()
        if isinstance(services, str):
            services = services.split(",")
        return cls(
            project=str(compose.get("project", PROJECT)),
            env=env,
            standins=standins or bool(compose.get("standins", False)),
            image=commands.image_ref(
                SERVICE_IMAGE,
                docker_images.default_tag(str(config.get("image_tag", ""))),
                str(config.get("registry", "")),
            ),
            services=tuple(str(s).strip() for s in services if str(s).strip()),
        )

    def argv(self, *args: str) -> list[str]:
        """``docker compose`` for this stack's files and project."""
        return argv(self.env, self.project, *args, standins=self.standins)


def combinations() -> list[dict[str, Any]]:
    """Every file combination and profile, as keyword arguments for ``config_check``."""
    result: list[dict[str, Any]] = []
    for env in ENVIRONMENTS:
        for standins in (False, True):
            for profiles in ((), PROFILES):
                result.append(
                    {
                        "env": env,
                        "standins": standins,
                        "profiles": profiles,
                        "variables": PROD_PLACEHOLDERS if env == "prod" else {},
                    }
                )
    return result


def files(env: str, *, standins: bool = False) -> list[Path]:
    """The compose files of ``env`` (plus the CI stand-ins overrides)."""
    if env not in ENVIRONMENTS:
        raise Exit(f"unknown environment {env!r}; choose one of: {', '.join(ENVIRONMENTS)}", 1)
    if not standins:
        return list(ENVIRONMENTS[env])
    return [*ENVIRONMENTS[env], CI_FILE, *([CI_PROD_FILE] if env == "prod" else [])]


def argv(
    env: str,
    project: str,
    *args: str,
    standins: bool = False,
    profiles: Iterable[str] = (),
) -> list[str]:
    """``docker compose`` for an environment's files."""
    return commands.compose_argv(files(env, standins=standins), project, *args, profiles=profiles)


def config_check(
    runner: Runner,
    env: str,
    *,
    standins: bool = False,
    profiles: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
) -> None:
    """``docker compose config -q`` (fails on any schema or interpolation error)."""
    runner.run(
        argv(env, PROJECT, "config", "--quiet", standins=standins, profiles=profiles),
        env=dict(variables or {}),
        capture=True,
        hint=f"the {env} compose files do not validate (see the message above)",
    )


def rendered(
    runner: Runner,
    env: str,
    *,
    standins: bool = False,
    profiles: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The fully merged and interpolated model (``docker compose config --format json``)."""
    out = runner.output(
        argv(env, PROJECT, "config", "--format", "json", standins=standins, profiles=profiles),
        env=dict(variables or {}),
    )
    return dict(json.loads(out))


def started(
    runner: Runner,
    env: str,
    services: Sequence[str],
    *,
    standins: bool = False,
    variables: Mapping[str, str] | None = None,
) -> set[str] | None:
    """What ``compose up SERVICES`` starts: the services named and, transitively, what they
    depend on (``depends_on`` of the model Compose merges, ``rendered``); None when no service
    is named (every service of the active profiles)."""
    if not services:
        return None
    defined = rendered(runner, env, standins=standins, variables=variables)["services"]
    todo, seen = list(services), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend((defined.get(name) or {}).get("depends_on") or ())
    return seen


def up(
    runner: Runner,
    *,
    env: str,
    project: str = PROJECT,
    image: str,
    standins: bool = False,
    wait: bool = True,
    services: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    build: bool = True,
) -> None:
    """Build the service image as ``image`` (unless ``build`` is false), then ``compose up``."""
    if build:
        docker_images.build(runner, IMAGES["service"], tags=[image])
    environment = {"OPTIMIZER_IMAGE": image, **(variables or {})}
    if standins:  # only those of the services this starts: each may wait for a Go build
        needed = started(runner, env, services, standins=True, variables=environment)
        standins_images.build(runner, CI_FILE, needed)
    args = ["up", "--detach", "--remove-orphans"]
    if wait:
        args += ["--wait", "--wait-timeout", str(WAIT_TIMEOUT_S)]
    runner.run(
        argv(env, project, *args, *services, standins=standins),
        env=environment,
        hint=f"`compose up` failed; see `uv run invoke compose.logs --env {env}`",
    )


def down(
    runner: Runner,
    *,
    project: str = PROJECT,
    volumes: bool = False,
    standins: bool = False,
    variables: Mapping[str, str] | None = None,
) -> None:
    """``compose down --remove-orphans`` (``--volumes`` drops named and anonymous volumes).

    Works for either environment: the development files name every volume, and the production
    extras (the proxy) are removed as orphans, without needing production's required settings.
    """
    args = ["down", "--remove-orphans", "--timeout", "20"]
    if volumes:
        args.append("--volumes")
    runner.run(
        argv("dev", project, *args, standins=standins, profiles=PROFILES),
        env={"OPTIMIZER_IMAGE": "unused:down", **(variables or {})},
    )


def ps(runner: Runner, *, project: str = PROJECT, standins: bool = False) -> list[dict[str, Any]]:
    """``compose ps --all --format json`` as a list of containers (any environment)."""
    out = runner.output(
        argv("dev", project, "ps", "--all", "--format", "json", standins=standins),
        env={"OPTIMIZER_IMAGE": "unused:ps"},
    )
    rows: list[dict[str, Any]] = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("["):  # older Compose prints one JSON array
            rows += json.loads(line)
        elif line:
            rows.append(json.loads(line))
    return rows
