"""The repository's single version and every file that must carry a copy of it.

The root ``pyproject.toml`` is the source of truth (``ops.core.project.version()``). A few files
must carry the same string because their own tools read them statically (package metadata,
``Chart.yaml``): each such *carrier* is listed here with the exact pattern
that holds the version, ``bump`` rewrites them all at once, and a test proves that no other
tracked file carries the version string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from ops.core import project, python_tools
from ops.core.runner import Runner

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
PARTS = ("major", "minor", "patch")


@dataclass(frozen=True)
class Carrier:
    """A file (glob relative to the root) and a regex whose group ``v`` is the version."""

    glob: str
    pattern: str

    def files(self, root: Path) -> list[Path]:
        return sorted(p for p in root.glob(self.glob) if p.is_file())


CARRIERS: tuple[Carrier, ...] = (
    Carrier("pyproject.toml", r'(?m)^version = "(?P<v>[^"]+)"$'),
    Carrier("services/*/pyproject.toml", r'(?m)^version = "(?P<v>[^"]+)"$'),
    Carrier("infra/helm/*/Chart.yaml", r"(?m)^version: (?P<v>\S+)$"),
    Carrier("infra/helm/*/Chart.yaml", r'(?m)^appVersion: "?(?P<v>[^"\s]+)"?$'),
)


def validate(version: str) -> str:
    """Return ``version`` if it is SemVer 2.0, else raise Exit naming the problem."""
    if not SEMVER.match(version):
        raise Exit(
            f"'{version}' is not a SemVer version (MAJOR.MINOR.PATCH[-PRE][+BUILD]); "
            "pass e.g. --version 1.2.3",
            code=2,
        )
    return version


def next_version(current: str, part: str) -> str:
    """The version after ``current`` when bumping ``part`` (major|minor|patch)."""
    match = SEMVER.match(current)
    if not match:
        raise Exit(f"the current version '{current}' is not SemVer; fix pyproject.toml", code=2)
    if part not in PARTS:
        raise Exit(f"unknown part '{part}'; use one of {', '.join(PARTS)}", code=2)
    major, minor, patch = (int(match.group(i)) for i in (1, 2, 3))
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _replace_version(match: re.Match[str], new: str) -> str:
    whole, offset = match.group(0), match.start(0)
    return whole[: match.start("v") - offset] + new + whole[match.end("v") - offset :]


def plan_bump(new: str, root: Path = project.ROOT) -> dict[Path, str]:
    """New contents of every carrier file that changes when moving to ``new``."""
    validate(new)
    contents: dict[Path, str] = {}
    for carrier in CARRIERS:
        for path in carrier.files(root):
            text = contents.get(path) or path.read_text()
            contents[path] = re.sub(carrier.pattern, lambda m: _replace_version(m, new), text)
    return {path: text for path, text in contents.items() if text != path.read_text()}


def bump(new: str, runner: Runner, root: Path = project.ROOT) -> list[Path]:
    """Rewrite every carrier to ``new`` and regenerate the derived files; return what changed.

    A dry-run runner only reports the carriers that would change.
    """
    changes = plan_bump(new, root)
    if runner.dry_run:
        return sorted(changes)
    for path, text in changes.items():
        path.write_text(text)
    project.version.cache_clear()
    runner.run(python_tools.uv("lock", "--quiet"), cwd=root)
    from ops.k8s import kube

    kube.write_manifests(kube.render_manifests(runner))
    return sorted(changes)
