"""The one place that builds ``docker`` and ``docker compose`` command lines, plus SDK helpers.

Command lines (lists, never shell strings) are for what only the CLIs do: BuildKit builds
(``DOCKER_BUILDKIT=1 docker build --network host``; the catalogue's ``docker`` is Debian's 20.10
client with BuildKit built in), ``docker push``, ``docker import`` and everything Compose. They
run through ``ops.core.runner.Runner`` so each is printed first and honours dry-run.

Running, inspecting, waiting on and removing containers goes through the Docker SDK
(``docker`` on PyPI): typed answers instead of parsed CLI text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
from docker.models.containers import Container
from invoke.exceptions import Exit

from ops.core.project import IMAGE_UID, ROOT
from ops.docker import engine as docker_engine

BUILD_ENV: Mapping[str, str] = {"DOCKER_BUILDKIT": "1"}


def image_ref(name: str, tag: str, registry: str = "") -> str:
    """``[registry/]name:tag``."""
    repository = f"{registry.rstrip('/')}/{name}" if registry else name
    return f"{repository}:{tag}"


def build_argv(
    dockerfile: Path,
    tags: Sequence[str],
    *,
    build_args: Mapping[str, str] | None = None,
    platform: str | None = None,
    context: Path = ROOT,
    progress: str = "plain",
    target: str | None = None,
) -> list[str]:
    """``docker build`` for BuildKit (run it with ``BUILD_ENV``). ``--network host``: on the
    project's build machines the package mirror answers on the host's network only, not on the
    bridge network RUN steps get by default."""
    argv = ["docker", "build", "--network", "host", "--progress", progress]
    argv += ["--file", str(dockerfile)]
    if platform:
        argv += ["--platform", platform]
    if target:
        argv += ["--target", target]
    for key, value in sorted((build_args or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    for tag in tags:
        argv += ["--tag", tag]
    argv.append(str(context))
    return argv


# How the service image must be able to run (issue 6; docs/containers.md): the SDK's keyword
# arguments for ``containers.run`` and the same as ``docker run`` flags, from one definition.
HARDENED: Mapping[str, Any] = {
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},  # noqa: S108 - the container's own /tmp
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "user": f"{IMAGE_UID}:{IMAGE_UID}",
}


def hardened_run_argv(
    ref: str, args: Sequence[str] = (), *, ports: Mapping[int, int] | None = None
) -> list[str]:
    """``docker run --rm`` with the HARDENED options; ports published on 127.0.0.1 only."""
    argv = ["docker", "run", "--rm", "--read-only"]
    for path, options in HARDENED["tmpfs"].items():
        argv += ["--tmpfs", f"{path}:{options}"]
    for capability in HARDENED["cap_drop"]:
        argv += ["--cap-drop", capability]
    for option in HARDENED["security_opt"]:
        argv += ["--security-opt", option]
    argv += ["--user", str(HARDENED["user"])]
    for host, container in sorted((ports or {}).items()):
        argv += ["--publish", f"127.0.0.1:{host}:{container}"]
    return [*argv, ref, *args]


def push_argv(ref: str) -> list[str]:
    """``docker push``."""
    return ["docker", "push", ref]


def tag_argv(source: str, target: str) -> list[str]:
    """``docker tag``."""
    return ["docker", "tag", source, target]


def compose_argv(
    files: Iterable[Path],
    project: str,
    *args: str,
    profiles: Iterable[str] = (),
    env_file: Path | None = None,
) -> list[str]:
    """``docker compose -p PROJECT -f FILE... [--profile P]... ARGS``."""
    argv = ["docker", "compose", "--project-name", project]
    for file in files:
        argv += ["--file", str(file)]
    for profile in profiles:
        argv += ["--profile", profile]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    argv += list(args)
    return argv


# -- SDK helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSize:
    """An image's uncompressed size, and how much its own layers add above its base."""

    ref: str
    total: int
    base: int

    @property
    def above_base(self) -> int:
        return self.total - self.base

    def describe(self) -> str:
        mb = 1_000_000
        return (
            f"{self.ref}: {self.total / mb:.1f} MB total, "
            f"{self.above_base / mb:.1f} MB above the base ({self.base / mb:.1f} MB)"
        )


def image_attrs(ref: str) -> dict[str, Any]:
    """``docker image inspect`` of ``ref`` as a dict; Exit when there is no such image."""
    api = docker_engine.client()
    try:
        return dict(api.images.get(ref).attrs)
    except docker.errors.ImageNotFound:
        raise Exit(f"no image {ref}; build it with `uv run invoke docker.build`", code=1) from None
    finally:
        api.close()


def image_exists(ref: str) -> bool:
    """True when the engine has an image ``ref`` (False also when no engine answers)."""
    try:
        api = docker_engine.client()  # asks the engine for its API version: may raise
    except docker.errors.DockerException:
        return False
    try:
        api.images.get(ref)
    except docker.errors.DockerException:  # ImageNotFound
        return False
    finally:
        api.close()
    return True


def image_size(ref: str, base_ref: str) -> ImageSize:
    """Sizes of ``ref`` and of ``base_ref`` (their shared layers count once)."""
    total = int(image_attrs(ref)["Size"])
    base = int(image_attrs(base_ref)["Size"])
    return ImageSize(ref, total, base)


def run_to_completion(
    ref: str, command: Sequence[str] | None = None, *, stderr: bool = True, **kwargs: Any
) -> tuple[int, str]:
    """Run a container from ``ref`` to completion (SDK); return (exit code, its output: stdout,
    plus stderr unless ``stderr`` is false). The container and its anonymous volumes are removed
    afterwards. ``kwargs`` go to ``containers.run`` (e.g. ``**HARDENED``, ``entrypoint``)."""
    api = docker_engine.client()
    container = api.containers.run(
        ref, list(command) if command is not None else None, detach=True, **kwargs
    )
    try:
        code = int(container.wait(timeout=300)["StatusCode"])
        return code, container.logs(stdout=True, stderr=stderr).decode(errors="replace")
    finally:
        remove(container)
        api.close()


def remove(container: Container) -> None:
    """Force-remove a container and its anonymous volumes; ignore one that is already gone."""
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=True)
