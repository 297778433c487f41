"""Build, tag and push the repository's images (used by the docker tasks, compose and tests).

``build`` stages the host-built wheels (``ops.docker.build_context``), makes sure the base image
exists (the registry-free stand-in when the real one can't be pulled, ``ops.docker.base_image``) and
runs one BuildKit build whose labels carry the repository version and the git revision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from ops.core.project import ROOT, version
from ops.core.runner import Runner
from ops.docker import base_image, build_context, commands
from ops.docker.build_context import IMAGES, ImageSpec


@dataclass(frozen=True)
class BuildResult:
    """What one build produced."""

    spec: ImageSpec
    refs: tuple[str, ...]
    seconds: float
    log: str  # BuildKit's plain progress output (empty in dry-run)
    build_args: dict[str, str]


def select(which: str) -> list[ImageSpec]:
    """``service``, ``cli`` or ``all`` → image specs; Exit naming the choices otherwise."""
    if which == "all":
        return list(IMAGES.values())
    if which not in IMAGES:
        raise Exit(f"unknown image {which!r}; choose one of: {', '.join(IMAGES)}, all", code=1)
    return [IMAGES[which]]


def default_tag(configured: str = "") -> str:
    """The configured image tag, else the repository version."""
    return configured or version()


def git_revision(runner: Runner) -> tuple[str, str]:
    """(commit sha, commit date ISO 8601) of HEAD; ("unknown", "unknown") outside a checkout."""
    try:
        out = runner.output(["git", "log", "-1", "--format=%H %cI"], cwd=ROOT)
    except Exit:  # not a checkout (e.g. an sdist): the labels say so
        return "unknown", "unknown"
    if not out:
        return "unknown", "unknown"
    sha, date = out.split(" ", 1)
    return sha, date


def build_args(runner: Runner) -> dict[str, str]:
    """Build args shared by both Dockerfiles (OCI labels, /version)."""
    sha, date = git_revision(runner)
    return {"VERSION": version(), "GIT_SHA": sha, "BUILD_DATE": date}


def build(
    runner: Runner,
    spec: ImageSpec,
    *,
    tags: list[str],
    platform: str = build_context.DEFAULT_PLATFORM,
    source_dir: Path | None = None,
    base: str | None = None,
    quiet: bool = False,
) -> BuildResult:
    """Stage and build one image; ``tags`` are full references (first one is the main).

    ``base`` overrides ``ARG BASE_IMAGE`` (else the stand-in is ensured under its default tag).
    The BuildKit log is returned either way; ``quiet`` only stops it being echoed.
    """
    if base is None:
        base_image.ensure(runner)
        args = build_args(runner)
    else:
        args = {**build_args(runner), "BASE_IMAGE": base}
    build_context.stage(runner, spec, platform=platform, source_dir=source_dir)
    argv = commands.build_argv(
        spec.dockerfile, tags, build_args=args, platform=platform, context=ROOT
    )
    started = time.monotonic()
    result = runner.run(
        argv,
        env=dict(commands.BUILD_ENV),
        capture=quiet,
        hint=f"the {spec.key} image did not build; the BuildKit log above says which step failed",
    )
    seconds = time.monotonic() - started
    log = "" if result is None else result.stderr + result.stdout
    return BuildResult(spec, tuple(tags), seconds, log, args)
