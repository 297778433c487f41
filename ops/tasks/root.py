"""Root-level tasks (setup, doctor, info, version, ...) and the list of mounted collections."""

from __future__ import annotations

import importlib
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from ops.core import project
from ops.tasks.new_service import new_service  # noqa: F401 (mounted at the root)
from ops.tasks.verify import verify  # noqa: F401 (mounted at the root)
from ops.tasks.workflow import (  # noqa: F401 (imported to mount them at the root)
    all_,
    audit,
    ci,
    clean,
    dev,
    fmt,
    health_check,
    info,
    install,
    lint,
    pre_commit,
)

# Defaults; overridable by invoke.yaml and INVOKE_* variables. Tasks read c.config.
DEFAULT_CONFIG: dict[str, Any] = {
    "llm_optimizer": {
        "registry": "",
        "image_tag": "",  # empty: the repository version
        "kube_context": "",  # helm/k8s tasks; empty: kubectl's current context
        "namespace": "llm-optimizer",  # helm/k8s tasks (ops/k8s/helm.py, ops/k8s/kube.py)
        "helm": {"values": []},  # extra values files for `invoke deploy --target helm`
        # The Compose stack the compose.* tasks and `--target compose` drive (ops/docker/compose.py)
        "compose": {"project": project.PROJECT, "env": "dev", "standins": False, "services": ""},
        "deploy": {"target": "local", "env": "dev"},
        # `invoke cluster.*` (ops/k8s/cluster.py);
        # empty state_dir: ~/.local/state/llm-optimizer/cluster
        "cluster": {
            "state_dir": "",
            "nodes": 2,
        },  # `invoke deploy` defaults (ops/deploy/targets.py)
        "local": {  # `invoke deploy --target local` (ops/deploy/local.py)
            "state_dir": "",  # empty: ops.core.project.state_dir()
            "host": "127.0.0.1",
            "http_port": project.HTTP_PORT,
            "grpc_port": project.GRPC_PORT,
            "metrics_port": project.METRICS_PORT,
            "ready_timeout": 90.0,
            "stop_timeout": 20.0,
        },
    },
}

# Areas mounted as collections, each an ops.tasks.<area> module.
AREAS: tuple[str, ...] = (
    "build",
    "test",
    "docker",
    "compose",
    "k8s",
    "helm",
    "systemd",
    "db",
    "release",
    "deploy",
    "monitoring",
    "cluster",
)


def collections() -> list[Collection]:
    """Import each area module and return it as a named collection."""
    result = []
    for area in AREAS:
        module = importlib.import_module(f"ops.tasks.{area}")
        result.append(Collection.from_module(module, name=area.replace("_", "-")))
    return result


@task(help={"check": "only compare; exit 1 when docs/architecture.md is stale"})
def architecture(c: Context, check: bool = False) -> None:
    """Write the generated layout of ops/ (packages, modules, import diagram) into
    docs/architecture.md."""
    from invoke.exceptions import Exit

    from ops.core import architecture as layout

    if check:
        if layout.current() != layout.render():
            raise Exit("docs/architecture.md is stale; run: uv run invoke architecture", code=1)
        print("docs/architecture.md is up to date")
        return
    print("wrote docs/architecture.md" if layout.write() else "docs/architecture.md is up to date")


@task
def version(c: Context) -> None:
    """Print the repository's single version."""
    print(project.version())


@task(
    iterable=["only"],
    help={
        "only": "install just this catalogued tool (repeat for several; default: every tool)",
        "dry_run": "print the commands and extractions that would run; change nothing",
        "background_builds": "leave the missing Go-built tools (the slow ones: minutes each "
        "when cold) to one detached, niced builder (log and marker in the tools "
        "cache) instead of building them now; whatever needs one of them waits for it",
    },
)
def setup(
    c: Context,
    only: list[str] | None = None,
    dry_run: bool = False,
    background_builds: bool = False,
) -> None:
    """Install every missing catalogued tool (idempotent): PyPI ones into the cache, apt as root."""
    from ops.core import provision
    from ops.core.runner import runner_for

    runner = runner_for(c, dry_run=dry_run)
    provision.setup(runner, provision.select(only), background=background_builds)


@task(iterable=["only"], help={"only": "check just this tool (repeat for several; default: all)"})
def doctor(c: Context, only: list[str] | None = None) -> None:
    """Table of every catalogued tool: wanted, found, version, source, how to install."""
    from invoke.exceptions import Exit

    from ops.core import provision
    from ops.core.runner import runner_for

    if provision.doctor(runner_for(c), provision.select(only)) != 0:
        raise Exit("required tools are missing or not the wanted version; run: uv run invoke setup")
