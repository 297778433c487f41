"""Invoke collection: docker — the engine, the stand-in base image, and the repository's images.

Images are named by the contract (``llm-optimizer-service``, ``llm-optimizer-cli``); registry and
tag come from ``c.config.llm_optimizer.registry`` / ``image_tag`` (default: the repository
version). See docs/containers.md.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

IMAGE_HELP = "service, cli, a generated service (invoke new-service) or all (default: all)"
PLATFORM_HELP = "target platform: linux/amd64 (default) or linux/arm64 (needs an arm64 base)"
TAG_HELP = "image tag (default: llm_optimizer.image_tag from the config, else the version)"
DRY_RUN_HELP = "print every command and change nothing"


def _ref(c: Context, name: str, tag: str = "") -> str:
    from ops.docker import commands
    from ops.docker import images as docker_images

    config = c.config.llm_optimizer
    return commands.image_ref(
        name, tag or docker_images.default_tag(str(config.image_tag)), str(config.registry)
    )


@task(help={"start": "start dockerd (installing docker.io with apt) when no engine answers"})
def engine(c: Context, start: bool = False) -> None:
    """Report whether a Docker engine answers; with --start, start one where none runs."""
    from ops.core.runner import runner_for
    from ops.docker import engine as docker_engine

    status = docker_engine.ensure_running(runner_for(c)) if start else docker_engine.status()
    print(status.describe())
    if not status.answering and not runner_for(c).dry_run:
        raise Exit("start one with: uv run invoke docker.engine --start", code=1)


@task(name="base-image", help={"dry_run": DRY_RUN_HELP})
def base_image(c: Context, dry_run: bool = False) -> None:
    """Build the registry-free stand-in base image (debootstrap + docker import); cached."""
    from ops.core.runner import runner_for
    from ops.docker import base_image as base

    tag = base.default_tag()
    outcome = base.ensure(runner_for(c, dry_run=dry_run), tag=tag)
    print(f"{tag}: {outcome} (recipe {base.Recipe().key})")


@task(
    help={"image": IMAGE_HELP, "platform": PLATFORM_HELP, "tag": TAG_HELP, "dry_run": DRY_RUN_HELP}
)
def build(
    c: Context,
    image: str = "all",
    platform: str = "linux/amd64",
    tag: str = "",
    dry_run: bool = False,
) -> None:
    """Build the service and/or CLI image from host-built wheels with BuildKit."""
    from ops.core.runner import runner_for
    from ops.docker import images as docker_images

    runner = runner_for(c, dry_run=dry_run)
    for spec in docker_images.select(image):
        result = docker_images.build(
            runner, spec, tags=[_ref(c, spec.name, tag)], platform=platform
        )
        if not runner.dry_run:
            print(f"built {result.refs[0]} in {result.seconds:.1f} s")


@task(help={"image": IMAGE_HELP, "tag": TAG_HELP, "dry_run": DRY_RUN_HELP})
def push(c: Context, image: str = "all", tag: str = "", dry_run: bool = False) -> None:
    """Push the built image(s) to llm_optimizer.registry (which must be set).

    An image built before the registry was configured (``name:tag``) is tagged first.
    """
    from ops.core.runner import runner_for
    from ops.docker import commands
    from ops.docker import images as docker_images

    if not str(c.config.llm_optimizer.registry):
        raise Exit(
            "no registry configured; set llm_optimizer.registry in invoke.yaml "
            "or INVOKE_LLM_OPTIMIZER_REGISTRY=registry.example.com/team",
            code=1,
        )
    runner = runner_for(c, dry_run=dry_run)
    for spec in docker_images.select(image):
        ref = _ref(c, spec.name, tag)
        local = commands.image_ref(spec.name, ref.rpartition(":")[2])
        if not commands.image_exists(ref) and commands.image_exists(local):
            runner.run(commands.tag_argv(local, ref))  # built before the registry was set
        runner.run(
            commands.push_argv(ref),
            hint=f"build it first (`uv run invoke docker.build --image {spec.key}`) and check "
            "that you are logged in to the registry (`docker login`)",
        )


@task(
    help={
        "image": "service (default) or cli",
        "tag": TAG_HELP,
        "args": "arguments for the entrypoint (default: the image's CMD), split like a shell",
        "dry_run": DRY_RUN_HELP,
    }
)
def run(
    c: Context, image: str = "service", tag: str = "", args: str = "", dry_run: bool = False
) -> None:
    """Run an image hardened (read-only, no capabilities, no-new-privileges, uid 1000)."""
    import shlex

    from ops.core import project
    from ops.core.runner import runner_for
    from ops.docker import commands
    from ops.docker import images as docker_images

    (spec,) = docker_images.select(image)
    argv = commands.hardened_run_argv(
        _ref(c, spec.name, tag),
        shlex.split(args),
        ports=(
            {project.HTTP_PORT: project.HTTP_PORT, project.GRPC_PORT: project.GRPC_PORT}
            if spec.key == "service"
            else {}
        ),
    )
    runner_for(c, dry_run=dry_run).run(argv)


@task(
    help={
        "image": IMAGE_HELP,
        "tag": TAG_HELP,
        "top": "distributions listed one per row, largest first; the rest share a row "
        "(0: all; default 25)",
    }
)
def size(c: Context, image: str = "all", tag: str = "", top: int = 25) -> None:
    """Print what dominates each built image: bytes above the base, per layer and per package.

    Builds nothing. For each image: its total size and what its layers add above the base image
    (the SDK's image history), then site-packages by installed distribution (largest first, split
    into bytecode, source, shared objects, stubs, tests, docs and other; the rows sum to the
    site-packages total), then other big paths and the shared objects still carrying symbols.
    The contents are measured by a probe run inside the image (hardened, no network).
    """
    from ops.docker import base_image as base
    from ops.docker import images as docker_images
    from ops.docker import size as image_size

    base_ref = base.default_tag()
    image_size.render(
        (
            image_size.report(_ref(c, spec.name, tag), base_ref)
            for spec in docker_images.select(image)
        ),
        top=top,
    )
