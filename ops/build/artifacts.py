"""Release artefacts: packages, multi-platform pex executables, checksums.

Shared by ``nox -s build`` and ``invoke release.build``. Every build runs with
SOURCE_DATE_EPOCH set to the last commit's time and from the locked requirements, so building
twice gives identical sha256 sums (a test proves it).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ops.core import project
from ops.core.runner import Runner

# pex's vendored pip is too old for today's wheel tags; use a release the index has.
PEX_PIP_VERSION: Final = "25.2"
TARGET_PYTHON: Final = (3, 11)
UNIVERSAL: Final = "universal"

# Target platforms as (os, machine, oldest OS release supported). Linux: glibc 2.28, as today's
# numpy wheels need it (an older baseline makes pex compile numpy from source). macOS: 11.0, as
# grpcio ships only macosx_11_0_universal2 wheels.
PLATFORMS: Final[dict[str, tuple[str, str, tuple[int, int]]]] = {
    "linux-x86_64": ("linux", "x86_64", (2, 28)),
    "linux-aarch64": ("linux", "aarch64", (2, 28)),
    "macos-x86_64": ("darwin", "x86_64", (11, 0)),
    "macos-arm64": ("darwin", "arm64", (11, 0)),
}
# Platforms only the lean client gets a pex for, built with the universal one (its build step):
# musllinux 1.2 (Alpine 3.13+). The service's aiokafka 0.14.0 has no musllinux wheel, and
# --no-build forbids compiling it.
CLIENT_PLATFORMS: Final[dict[str, tuple[str, str, tuple[int, int]]]] = {
    "linux-x86_64-musl": ("musllinux", "x86_64", (1, 2)),
}


def complete_platform(name: str) -> dict[str, object]:
    """A pex "complete platform" (PEP 508 environment + compatible wheel tags) for ``name``.

    Derived with ``packaging.tags`` rather than inspected from a foreign interpreter, so every
    platform can be targeted from this machine and every marker (python_full_version too)
    evaluates exactly.
    """
    from packaging import tags

    system, machine, (major, minor) = {**PLATFORMS, **CLIENT_PLATFORMS}[name]
    if system == "linux":
        platform_tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 16, -1)]
        platform_tags += [f"manylinux2014_{machine}", f"linux_{machine}"]
    elif system == "musllinux":
        platform_tags = [f"musllinux_{major}_{m}_{machine}" for m in range(minor, -1, -1)]
        platform_tags += [f"linux_{machine}"]
    else:
        platform_tags = list(tags.mac_platforms((major, minor), machine))
    interpreter = f"cp{TARGET_PYTHON[0]}{TARGET_PYTHON[1]}"
    compatible = [
        *tags.cpython_tags(TARGET_PYTHON, platforms=platform_tags),
        *tags.compatible_tags(TARGET_PYTHON, interpreter, platform_tags),
    ]
    python = ".".join(map(str, TARGET_PYTHON))
    return {
        "marker_environment": {
            "implementation_name": "cpython",
            "implementation_version": f"{python}.0",
            "os_name": "posix",
            "platform_machine": machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Darwin" if system == "darwin" else "Linux",
            "platform_version": "",
            "python_full_version": f"{python}.0",
            "python_version": python,
            "sys_platform": "darwin" if system == "darwin" else "linux",
        },
        "compatible_tags": [str(tag) for tag in compatible],
    }


def compatible_tags(name: str) -> list[str]:
    """The wheel tags a pex for platform ``name`` accepts (UNIVERSAL: any of the platforms')."""
    names = list(PLATFORMS) if name == UNIVERSAL else [name]
    tags: list[str] = []
    for each in names:
        platform_tags = complete_platform(each)["compatible_tags"]
        assert isinstance(platform_tags, list)
        tags += platform_tags
    return tags


@dataclass(frozen=True)
class Package:
    """A distributable package under services/: its directory, distribution and command."""

    directory: Path
    dist: str
    command: str

    @property
    def root(self) -> Path:
        """The repository the package belongs to."""
        return self.directory.parent.parent

    @property
    def lean(self) -> bool:
        """A client-only package (no server dependencies) that gets the universal pex."""
        return self.dist == project.CLI_DIST


def packages(root: Path = project.ROOT) -> list[Package]:
    """Every package under services/, read from its pyproject.toml."""
    found = []
    for pyproject in sorted((root / "services").glob("*/pyproject.toml")):
        meta = tomllib.loads(pyproject.read_text())["project"]
        scripts = list(meta.get("scripts", {}))
        found.append(Package(pyproject.parent, meta["name"], scripts[0] if scripts else ""))
    return found


def source_date_epoch(runner: Runner, root: Path = project.ROOT) -> str:
    """The last commit's time (seconds since the epoch), for reproducible builds."""
    return runner.output(["git", "log", "-1", "--format=%ct"], cwd=root)


def build_env(runner: Runner, root: Path = project.ROOT) -> dict[str, str]:
    """Environment for reproducible builds."""
    return {"SOURCE_DATE_EPOCH": source_date_epoch(runner, root), "PYTHONHASHSEED": "0"}


def build_packages(runner: Runner, out: Path, root: Path = project.ROOT) -> None:
    """sdist and wheel of every package under services/ of ``root`` into ``out``."""
    env = build_env(runner, root)
    for package in packages(root):
        runner.run(
            ["uv", "build", "--package", package.dist, "--out-dir", out, "--no-create-gitignore"],
            env=env,
            cwd=root,
        )


def export_requirements(runner: Runner, package: Package, path: Path) -> Path:
    """The package's locked third-party requirements (from uv.lock), with their markers."""
    locked = runner.output(
        [
            "uv",
            "export",
            "--frozen",
            "--no-hashes",
            "--no-dev",
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
            "--package",
            package.dist,
        ],
        cwd=package.root,
    )
    path.write_text(locked + "\n")
    return path


def pex_name(package: Package, platform: str, version: str) -> str:
    return f"{package.dist}-{version}-{platform}.pex"


def build_pex(
    runner: Runner, package: Package, platform: str, wheels: Path, out: Path, workdir: Path
) -> Path:
    """A self-contained pex of ``package`` for one platform (or all of them: UNIVERSAL)."""
    names = list(PLATFORMS) if platform == UNIVERSAL else [platform]
    platform_files = []
    for name in names:
        path = workdir / f"platform-{name}.json"
        path.write_text(json.dumps(complete_platform(name), indent=1))
        platform_files.append(path)
    requirements = export_requirements(runner, package, workdir / f"{package.dist}.txt")
    target = out / pex_name(package, platform, project.version())
    argv: list[str | Path] = [
        "pex",
        "--pip-version",
        PEX_PIP_VERSION,
        "--no-build",  # wheels only: never compile a dependency for the wrong platform
        *(arg for path in platform_files for arg in ("--complete-platform", path)),
        "--requirement",
        requirements,
        "--find-links",
        wheels,
        f"{package.dist}=={project.version()}",
        "--console-script",
        package.command,
        "--python-shebang",
        "/usr/bin/env python3",
        "--output-file",
        target,
    ]
    runner.run(argv, env=build_env(runner, package.root), cwd=package.root)
    return target


def pex_targets(platform: str) -> list[tuple[Package, str]]:
    """Which (package, platform) pex files a build for ``platform`` produces.

    Every package gets a pex per concrete platform; the lean client also gets one universal pex
    and, in the same build, one per CLIENT_PLATFORMS entry.
    """
    if platform == UNIVERSAL:
        lean = [p for p in packages() if p.lean]
        return [(p, target) for target in (UNIVERSAL, *CLIENT_PLATFORMS) for p in lean]
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; use one of {sorted(PLATFORMS)}")
    return [(p, platform) for p in packages()]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sha256sums(directory: Path, files: Iterable[Path]) -> Path:
    """Write SHA256SUMS (``sha256sum -c`` format, paths relative to ``directory``)."""
    lines = [f"{sha256(f)}  {f.relative_to(directory).as_posix()}" for f in sorted(files)]
    target = directory / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target
