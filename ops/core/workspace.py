"""The services generated from ``templates/service`` (``invoke new-service``), found by their files.

A directory ``services/<dir>/`` is one when its ``pyproject.toml`` has a
``[tool.llm-optimizer.service]`` table (the image name and the ports it claims) and a
``Dockerfile`` sits next to it. Nothing else has to be edited for the tooling to see it: the
image table (``ops.docker.build_context.IMAGES``) and the port check of ``invoke new-service`` read
this list.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ops.core.project import ROOT

SERVICES_DIR = ROOT / "services"
TOOL_TABLE = ("llm-optimizer", "service")


@dataclass(frozen=True)
class GeneratedService:
    """One template-generated service, as its pyproject.toml declares it."""

    directory: Path
    dist: str  # [project].name, also the console script
    image: str
    http_port: int
    metrics_port: int

    @property
    def dockerfile(self) -> Path:
        """The service's own Dockerfile (build context: the repository root)."""
        return self.directory / "Dockerfile"


def _read(pyproject: Path) -> GeneratedService | None:
    with pyproject.open("rb") as fh:
        data = tomllib.load(fh)
    table = data.get("tool", {})
    for key in TOOL_TABLE:
        table = table.get(key, {}) if isinstance(table, dict) else {}
    if not table:
        return None
    return GeneratedService(
        directory=pyproject.parent,
        dist=str(data["project"]["name"]),
        image=str(table["image"]),
        http_port=int(table["http_port"]),
        metrics_port=int(table["metrics_port"]),
    )


def discover(services_dir: Path = SERVICES_DIR) -> list[GeneratedService]:
    """Every generated service under ``services_dir`` that has a Dockerfile, by directory name."""
    found = []
    for pyproject in sorted(services_dir.glob("*/pyproject.toml")):
        service = _read(pyproject)
        if service is not None and service.dockerfile.is_file():
            found.append(service)
    return found
