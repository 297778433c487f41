"""Stage the build context of an image: host-built wheels that the Dockerfile installs offline.

Why host-built wheels (and not a BuildKit secret carrying the proxy's CA bundle): nothing is
downloaded inside the build, so no CA, token or index URL can reach a layer or the build cache;
the wheels are exactly the ones ``uv.lock`` pins, checked against its hashes (``pip download
--require-hashes`` here, ``pip install --require-hashes`` in the image); they are cached on the
host between builds (a cold build needs no network at all once the wheelhouse is filled); and
``--platform linux/arm64`` gets the aarch64 wheels without running pip under emulation.

Layout under ``build/docker/<image>/`` (``build/`` is git-ignored; the root ``.dockerignore``
lets only this directory into the build context):

- ``requirements.txt`` — the image's third-party dependencies, exported from ``uv.lock`` with
  hashes and without annotations, so it only changes when the locked set changes;
- ``wheels/`` — exactly those wheels, for the target platform (the dependency layer);
- ``app/`` — the wheel of our own package (the code layer; rebuilt every time, reproducibly).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from ops import base_image
from ops.project import (
    CLI_DIR,
    CLI_DIST,
    CLI_IMAGE,
    INFRA_DIR,
    ROOT,
    SERVICE_DIR,
    SERVICE_DIST,
    SERVICE_IMAGE,
    cache_dir,
)
from ops.runner import Runner

STAGING_ROOT = ROOT / "build" / "docker"
PIP = "pip==25.3"  # run through `uv tool run`; pip's --platform downloads need a recent pip
GLIBC_MINOR = 36  # Debian bookworm's glibc 2.36: manylinux_2_17 … manylinux_2_36 wheels fit
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
DEFAULT_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class ImageSpec:
    """One image the repository builds."""

    key: str  # "service" | "cli"
    name: str  # image repository name (contract)
    dist: str  # the workspace package installed in it
    source_dir: Path  # that package's directory (pyproject.toml)
    dockerfile: Path

    @property
    def staging(self) -> Path:
        """This image's staged build inputs (inside the repository's build context)."""
        return STAGING_ROOT / self.key


IMAGES: dict[str, ImageSpec] = {
    "service": ImageSpec(
        "service",
        SERVICE_IMAGE,
        SERVICE_DIST,
        SERVICE_DIR,
        INFRA_DIR / "docker" / "Dockerfile.service",
    ),
    "cli": ImageSpec("cli", CLI_IMAGE, CLI_DIST, CLI_DIR, INFRA_DIR / "docker" / "Dockerfile.cli"),
}


def image_python() -> str:
    """The Python minor version of the base image (from its tag, e.g. python:3.11.14-… → 3.11)."""
    tag = base_image.default_tag()
    match = re.search(r":(\d+)\.(\d+)", tag)
    if match is None:
        raise Exit(f"cannot read a Python version from the base image tag {tag!r}", code=1)
    return f"{match.group(1)}.{match.group(2)}"


def pip_platform_args(platform: str) -> list[str]:
    """pip ``--platform`` flags: every manylinux tag a bookworm container of ``platform`` runs."""
    if platform not in PLATFORMS:
        raise Exit(f"unsupported platform {platform!r}; use one of {', '.join(PLATFORMS)}", code=1)
    arch = PLATFORMS[platform]
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)]
    tags.append(f"manylinux2014_{arch}")  # pip expands it to manylinux2010/manylinux1 on x86_64
    args: list[str] = []
    for tag in tags:
        args += ["--platform", tag]
    return args


def export_requirements(runner: Runner, spec: ImageSpec, out: Path) -> None:
    """Write the image's locked third-party requirements (with hashes) from uv.lock."""
    out.parent.mkdir(parents=True, exist_ok=True)
    runner.run(
        [
            "uv",
            "export",
            "--frozen",
            "--quiet",
            f"--package={spec.dist}",
            "--no-dev",
            "--no-default-groups",
            "--no-emit-workspace",
            "--no-annotate",
            "--no-header",
            "--format=requirements.txt",
            f"--output-file={out}",
        ],
        cwd=ROOT,
        hint="uv.lock is out of date? run `uv lock` and commit it",
    )


def target_environment(platform: str) -> dict[str, str]:
    """PEP 508 marker values of a Linux container of ``platform`` running the image's Python."""
    python = image_python()
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": PLATFORMS[platform],
    }


def _pinned(requirements: Path, platform: str) -> dict[str, str]:
    """name → version of every requirement whose marker holds on the target platform."""
    environment = target_environment(platform)
    pins: dict[str, str] = {}
    text = requirements.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = re.sub(r"--hash=\S+", "", line).strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        (spec,) = requirement.specifier
        pins[str(canonicalize_name(requirement.name))] = spec.version
    return pins


def _matching_wheels(wheelhouse: Path, pins: dict[str, str]) -> list[Path]:
    found: list[Path] = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        if pins.get(str(name)) == str(version):
            found.append(wheel)
    return found


def download_wheels(runner: Runner, requirements: Path, platform: str) -> list[Path]:
    """Fill the platform's wheelhouse in the cache for ``requirements``; return its wheels.

    Keyed on the requirements' hash: a second call for the same set needs no network.
    """
    wheelhouse = cache_dir() / "wheelhouse" / platform.replace("/", "-")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{platform}\n{requirements.read_text()}".encode()).hexdigest()[:16]
    marker = wheelhouse / f".complete-{key}"
    pins = _pinned(requirements, platform)
    if not marker.is_file():
        runner.run(
            [
                "uv",
                "tool",
                "run",
                "--quiet",
                "--from",
                PIP,
                "pip",
                "download",
                "--quiet",
                "--quiet",  # errors only: the host's pip.conf may list absent find-links dirs
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
                f"--python-version={image_python()}",
                "--implementation=cp",
                *pip_platform_args(platform),
                f"--dest={wheelhouse}",
                f"--requirement={requirements}",
            ],
            hint="a locked dependency has no wheel for this platform, or PyPI is unreachable",
        )
        if runner.dry_run:
            return []
        marker.write_text("\n".join(sorted(pins)) + "\n")
    wheels = _matching_wheels(wheelhouse, pins)
    missing = set(pins) - {str(parse_wheel_filename(w.name)[0]) for w in wheels}
    if missing:
        marker.unlink(missing_ok=True)
        raise Exit(
            f"no wheel in {wheelhouse} for: {', '.join(sorted(missing))}; "
            "re-run to download them (the cache marker was removed)",
            code=1,
        )
    return wheels


def _sync_dir(target: Path, files: list[Path]) -> None:
    """Make ``target`` hold exactly ``files`` (unchanged files are left alone, so the
    content-addressed build cache stays valid)."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {f.name: f for f in files}
    for existing in target.iterdir():
        if existing.name not in wanted:
            existing.unlink()
    for name, source in wanted.items():
        dest = target / name
        if dest.is_file() and dest.stat().st_size == source.stat().st_size:
            continue
        tmp = target / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(dest)


def build_app_wheel(runner: Runner, spec: ImageSpec, source_dir: Path | None = None) -> None:
    """Build our own package's wheel into ``app/`` (hatchling wheels are reproducible, so an
    unchanged tree gives the same bytes and the code layer stays cached)."""
    app = spec.staging / "app"
    out = spec.staging / "app.new"
    shutil.rmtree(out, ignore_errors=True)
    runner.run(
        [
            "uv",
            "build",
            "--quiet",
            "--wheel",
            f"--out-dir={out}",
            source_dir or spec.source_dir,
        ],
        cwd=ROOT,
    )
    if runner.dry_run:
        return
    wheels = [w for w in out.glob("*.whl")]
    if len(wheels) != 1:
        raise Exit(f"expected one wheel from `uv build` in {out}, found {len(wheels)}", code=1)
    previous = list(app.glob("*.whl")) if app.is_dir() else []
    unchanged = (
        len(previous) == 1
        and previous[0].name == wheels[0].name
        and previous[0].read_bytes() == wheels[0].read_bytes()
    )
    if not unchanged:
        _sync_dir(app, [])
        _sync_dir(app, wheels)
    shutil.rmtree(out, ignore_errors=True)


def stage(
    runner: Runner,
    spec: ImageSpec,
    *,
    platform: str = DEFAULT_PLATFORM,
    source_dir: Path | None = None,
) -> Path:
    """Stage requirements, dependency wheels and the app wheel for ``spec``; return the dir."""
    requirements = spec.staging / "requirements.txt"
    export_requirements(runner, spec, requirements)
    if runner.dry_run:
        print(f"[dry-run] stage wheels for {platform} into {spec.staging / 'wheels'}")
    else:
        _sync_dir(spec.staging / "wheels", download_wheels(runner, requirements, platform))
    build_app_wheel(runner, spec, source_dir)
    return spec.staging
