"""Facts about the repository, derived from its files: one source of truth for each.

The version lives in the root ``pyproject.toml``; every other carrier (the packages, the chart,
image tags) is kept equal to it by ``invoke release.bump`` and checked by tests.
Ports and names are the product contract's (``docs/contract.md``); tests check that the service's
settings defaults agree with them.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]

PROJECT: Final = "llm-optimizer"
SERVICE_DIST: Final = "llm-optimizer-service"
CLI_DIST: Final = "llm-optimizer-cli"
SERVICE_COMMAND: Final = "llm-optimizer-service"
SERVICE_IMAGE: Final = "llm-optimizer-service"
CLI_IMAGE: Final = "llm-optimizer-cli"
CHART_NAME: Final = "llm-optimizer"
SYSTEMD_UNIT: Final = "llm-optimizer.service"
# The prefix of every environment variable of the service, the client and these tools.
ENV_PREFIX: Final = "LLM_OPTIMIZER_"
# The service and CLI images' own user (Dockerfile `USER`); Kubernetes pods override it with the
# chart's securityContext (docs/kubernetes.md).
IMAGE_UID: Final = 1000

HTTP_PORT: Final = 8080
GRPC_PORT: Final = 50051
METRICS_PORT: Final = 9090

SERVICE_DIR: Final = ROOT / "services" / "optimizer"
CLI_DIR: Final = ROOT / "services" / "cli"
INFRA_DIR: Final = ROOT / "infra"
CHART_DIR: Final = INFRA_DIR / "helm" / CHART_NAME
MONITORING_DIR: Final = ROOT / "monitoring"


def env(*path: str) -> str:
    """The environment variable of a service setting (or another of our variables), by its
    path: ``env("log", "level")`` is ``LLM_OPTIMIZER_LOG__LEVEL``, the service's own rule (nested
    settings joined by a double underscore; a test compares with the service's settings)."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


@cache
def version() -> str:
    """The repository's single version, from the root pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def _dir_from_env(override: str, xdg: str, fallback: Path) -> Path:
    if os.environ.get(override):
        path = Path(os.environ[override])
    elif os.environ.get(xdg):
        path = Path(os.environ[xdg]) / PROJECT
    else:
        path = fallback / PROJECT
    return path  # created by whatever writes there first, never by asking (dry runs)


def cache_dir() -> Path:
    """Where slow downloads and built artefacts are cached between runs (outside the repo)."""
    return _dir_from_env("LLM_OPTIMIZER_OPS_CACHE", "XDG_CACHE_HOME", Path.home() / ".cache")


def state_dir() -> Path:
    """Where `invoke deploy --target local` keeps its pid file, logs and data (outside the repo)."""
    return _dir_from_env(
        "LLM_OPTIMIZER_OPS_STATE", "XDG_STATE_HOME", Path.home() / ".local" / "state"
    )


def in_ci() -> bool:
    """True when the CI environment variable is set to anything but an empty/false value."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
