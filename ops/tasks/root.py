"""Root-level tasks (setup, doctor, info, version, ...) and the list of mounted collections."""

from __future__ import annotations

import importlib
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from ops import project

# Defaults; overridable by invoke.yaml and INVOKE_* variables. Tasks read c.config.
DEFAULT_CONFIG: dict[str, Any] = {
    "llm_optimizer": {
        "registry": "",
        "image_tag": "",  # empty: the repository version
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
)


def collections() -> list[Collection]:
    """Import each area module and return it as a named collection."""
    result = []
    for area in AREAS:
        module = importlib.import_module(f"ops.tasks.{area}")
        result.append(Collection.from_module(module, name=area.replace("_", "-")))
    return result


@task
def version(c: Context) -> None:
    """Print the repository's single version."""
    print(project.version())
