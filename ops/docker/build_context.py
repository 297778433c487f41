"""Stage the build context of an image: host-built wheels that the Dockerfile installs offline.

Why host-built wheels (and not a BuildKit secret carrying the proxy's CA bundle): nothing is
downloaded inside the build, so no CA, token or index URL can reach a layer or the build cache;
the wheels are exactly the ones ``uv.lock`` pins, checked against its hashes (``pip download
--require-hashes`` here, ``pip install --require-hashes`` in the image); they are cached on the
host between builds (a cold build needs no network at all once the wheelhouse is filled); and
``--platform linux/arm64`` gets the aarch64 wheels without running pip under emulation.

One exception, per image (``ImageSpec.from_source``), for its size (docs/containers.md#image-size):
a dependency built here from its locked source distribution (checked against the lock's hash)
with build settings of its own, for the build host's platform, possibly in place of another
locked package (psycopg-c, from the service's ``libpq`` extra, for psycopg-binary); the staged
``requirements.txt`` then pins that wheel by its own sha256. Another platform gets PyPI's wheels.

Layout under ``build/docker/<image>/`` (``build/`` is git-ignored; the root ``.dockerignore``
lets only this directory into the build context):

- ``requirements.txt`` — the image's third-party dependencies, exported from ``uv.lock`` with
  hashes and without annotations, so it only changes when the locked set changes;
- ``wheels/`` — exactly those wheels, for the target platform (the dependency layer);
- ``app/`` — the wheel of our own package (the code layer; rebuilt every time, reproducibly).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
from invoke.exceptions import Exit
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from ops.core import tools
from ops.core import workspace as services
from ops.core.project import (
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
from ops.core.runner import Runner
from ops.docker import base_image

STAGING_ROOT = ROOT / "build" / "docker"
PIP = "pip==25.3"  # run through `uv tool run`; pip's --platform downloads need a recent pip
GLIBC_MINOR = 36  # Debian bookworm's glibc 2.36: manylinux_2_17 … manylinux_2_36 wheels fit
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
DEFAULT_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class SourceBuild:
    """A locked dependency an image installs built from its locked sdist, not from PyPI's wheel."""

    name: str  # canonical distribution name
    settings: tuple[str, ...] = ()  # `uv build --config-setting` values
    tools: tuple[str, ...] = ("gcc", "g++")  # catalogued tools the build needs
    replaces: str = ""  # a locked package the image then leaves out


# numpy's wheels on PyPI carry their own OpenBLAS (25.4 MB) and libgfortran (2.8 MB). The service
# calls no linear algebra, so its image gets numpy built with numpy's own fallbacks for BLAS and
# LAPACK, and without runtime SIMD dispatch (the baseline instructions only: the engine's arrays
# hold a few arms).
NUMPY_WITHOUT_BLAS = SourceBuild(
    "numpy",
    (
        "setup-args=-Dblas=none",
        "setup-args=-Dlapack=none",
        "setup-args=-Dallow-noblas=true",
        "setup-args=-Dcpu-dispatch=none",
    ),
)
# psycopg's C implementation, compiled against Debian's libpq (the runtime stage installs libpq5
# for pg_dump), in place of psycopg-binary and its own libpq, OpenSSL and Kerberos (10.8 MB).
# psycopg's Python implementation on the same libpq would need no build, but costs twice the
# CPU per decision-log batch on PostgreSQL (docs/containers.md#image-size).
PSYCOPG_C = SourceBuild("psycopg-c", tools=("gcc", "pg_config"), replaces="psycopg-binary")


@dataclass(frozen=True)
class ImageSpec:
    """One image the repository builds."""

    key: str  # "service" | "cli"
    name: str  # image repository name (contract)
    dist: str  # the workspace package installed in it
    source_dir: Path  # that package's directory (pyproject.toml)
    dockerfile: Path
    extras: tuple[str, ...] = ()  # extras of ``dist`` the image installs
    from_source: tuple[SourceBuild, ...] = ()  # built here for the host's platform

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
        extras=("libpq",),
        from_source=(NUMPY_WITHOUT_BLAS, PSYCOPG_C),
    ),
    "cli": ImageSpec("cli", CLI_IMAGE, CLI_DIST, CLI_DIR, INFRA_DIR / "docker" / "Dockerfile.cli"),
    # Services generated by `invoke new-service` (ops/core/workspace.py): keyed by their directory.
    **{
        s.directory.name: ImageSpec(s.directory.name, s.image, s.dist, s.directory, s.dockerfile)
        for s in services.discover()
    },
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


def native_platform() -> str | None:
    """The platform of this build host, when it is one of ``PLATFORMS``."""
    machine = os.uname().machine
    return next((p for p, arch in PLATFORMS.items() if arch == machine), None)


def export_requirements(
    runner: Runner, spec: ImageSpec, out: Path, extras: tuple[str, ...] = ()
) -> None:
    """Write the image's locked third-party requirements (with hashes) from uv.lock, with the
    package's ``extras``."""
    if not runner.dry_run:
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
            *(f"--extra={extra}" for extra in extras),
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


def _entries(text: str) -> list[tuple[Requirement, str]]:
    """Each requirement of an exported requirements.txt with its whole entry (continuation lines
    joined, hashes kept)."""
    entries: list[tuple[Requirement, str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        line = " ".join(line.split())
        if not line or line.startswith(("#", "-")):
            continue
        entries.append((Requirement(re.sub(r"--hash=\S+", "", line).strip()), line))
    return entries


def _name(requirement: Requirement) -> str:
    return str(canonicalize_name(requirement.name))


def _pinned(text: str, platform: str) -> dict[str, str]:
    """name → version of every requirement (of a requirements.txt's ``text``) whose marker holds
    on the target platform."""
    environment = target_environment(platform)
    pins: dict[str, str] = {}
    for requirement, _entry in _entries(text):
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        (spec,) = requirement.specifier
        pins[_name(requirement)] = spec.version
    return pins


def _matching_wheels(wheelhouse: Path, pins: dict[str, str]) -> list[Path]:
    found: list[Path] = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        if pins.get(str(name)) == str(version):
            found.append(wheel)
    return found


def download_wheels(
    runner: Runner, requirements: Path, platform: str, skip: frozenset[str] = frozenset()
) -> list[Path]:
    """Fill the platform's wheelhouse in the cache for ``requirements`` (but the packages in
    ``skip``); return its wheels.

    Keyed on the requirements' hash: a second call for the same set needs no network.
    """
    wheelhouse = cache_dir() / "wheelhouse" / platform.replace("/", "-")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f"{entry}\n" for r, entry in _entries(requirements.read_text()) if _name(r) not in skip
    )
    key = hashlib.sha256(f"{platform}\n{text}".encode()).hexdigest()[:16]
    marker = wheelhouse / f".complete-{key}"
    pins = _pinned(text, platform)
    if not marker.is_file():
        with tempfile.TemporaryDirectory(prefix="llm-optimizer-requirements-") as tmp:
            wanted = Path(tmp) / "requirements.txt"
            wanted.write_text(text)
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
                    f"--requirement={wanted}",
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


def build_from_source(
    runner: Runner, requirements: Path, platform: str, build: SourceBuild
) -> Path | None:
    """The wheel of ``build.name`` at its locked version, built from its locked sdist with
    ``build.settings`` (cached); None when ``platform`` is not this host's (PyPI's wheel then).

    The sdist is the one uv.lock pins (its URL, checked against its hash), built by ``uv build``
    with the image's Python minor version; the build dependencies are the ones the sdist names,
    resolved by uv at the time of the first build. Cached under ``cache_dir()/source-built`` by
    the sdist's hash, the settings, the Python and the platform.
    """
    if platform != native_platform():
        print(
            f"{build.name}: PyPI's wheel for {platform}; it is built from source only for this "
            f"host's platform ({native_platform()})",
            file=sys.stderr,
        )
        return None
    environment = target_environment(platform)
    (entry,) = [
        e
        for r, e in _entries(requirements.read_text())
        if _name(r) == build.name and (r.marker is None or r.marker.evaluate(environment))
    ]
    requirement = Requirement(re.sub(r"--hash=\S+", "", entry).strip())
    (version,) = [spec.version for spec in requirement.specifier]
    url, digest = locked_sdist(build.name, version)
    recipe = "\n".join([url, digest, *build.settings, image_python(), platform])
    out = cache_dir() / "source-built" / hashlib.sha256(recipe.encode()).hexdigest()[:16]
    built = sorted(out.glob("*.whl"))
    if len(built) == 1:
        return built[0]
    shutil.rmtree(out, ignore_errors=True)  # an incomplete entry
    for tool in build.tools:
        tools.require(tool)
    settings = f" ({' '.join(build.settings)})" if build.settings else ""
    print(f"building {build.name} {version} from its locked sdist{settings}, once: cached in {out}")
    with tempfile.TemporaryDirectory(prefix=f"llm-optimizer-{build.name}-") as tmp:
        sdist = Path(tmp) / url.rpartition("/")[2]
        download_checked(url, digest, sdist)
        runner.run(
            [
                "uv",
                "build",
                "--quiet",
                "--wheel",
                f"--python={image_python()}",
                f"--out-dir={tmp}/wheel",
                *(f"--config-setting={setting}" for setting in build.settings),
                sdist,
            ],
            hint=f"building {build.name} needs {', '.join(build.tools)} and Python "
            f"{image_python()}'s headers",
        )
        (wheel,) = Path(tmp, "wheel").glob("*.whl")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        shutil.copyfile(wheel, partial / wheel.name)
        try:
            partial.rename(out)
        except OSError:  # another process built the same wheel first: keep that one
            shutil.rmtree(partial, ignore_errors=True)
    return out / wheel.name


def locked_sdist(name: str, version: str) -> tuple[str, str]:
    """The URL and hash (``sha256:…``) of the source distribution uv.lock pins for a package."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for package in lock.get("package", []):
        if package.get("name") == name and package.get("version") == version:
            sdist = package.get("sdist")
            if sdist:
                return str(sdist["url"]), str(sdist["hash"])
    raise Exit(f"uv.lock has no source distribution of {name} {version}; run `uv lock`", code=1)


def download_checked(url: str, digest: str, dest: Path) -> None:
    """Download ``url`` to ``dest``, refusing it unless its sha256 is ``digest`` (``sha256:…``)."""
    algorithm, _, expected = digest.partition(":")
    checksum = hashlib.new(algorithm)
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60.0) as response:
            response.raise_for_status()
            with dest.open("wb") as out:
                for chunk in response.iter_bytes():
                    checksum.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Exit(
            f"cannot download {url}: {reason}; check network access to PyPI", code=1
        ) from None
    if checksum.hexdigest() != expected:
        dest.unlink()
        raise Exit(
            f"{url} does not match uv.lock's hash ({digest}, got {algorithm}:"
            f"{checksum.hexdigest()}): refusing to build it",
            code=1,
        )


def pin_to_wheels(
    requirements: Path, wheels: dict[str, Path], drop: frozenset[str] = frozenset()
) -> None:
    """Pin each package of ``wheels`` in ``requirements`` to that wheel's version and sha256 (the
    image's ``pip install --require-hashes`` then checks the wheel built here); leave out the
    packages in ``drop``."""
    if not wheels and not drop:
        return
    lines = []
    for requirement, entry in _entries(requirements.read_text()):
        if _name(requirement) not in wheels and _name(requirement) not in drop:
            lines.append(entry)
    for name, wheel in sorted(wheels.items()):
        version = parse_wheel_filename(wheel.name)[1]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    requirements.write_text("".join(f"{line}\n" for line in lines))


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
    export_requirements(runner, spec, requirements, extras=spec.extras)
    if runner.dry_run:
        for build in spec.from_source:
            instead = f" instead of {build.replaces}" if build.replaces else ""
            print(f"[dry-run] build {build.name} from its locked sdist for {platform}{instead}")
        print(f"[dry-run] stage wheels for {platform} into {spec.staging / 'wheels'}")
    else:
        built: dict[str, Path] = {}
        dropped: set[str] = set()
        for build in spec.from_source:
            wheel = build_from_source(runner, requirements, platform, build)
            if wheel is not None:
                built[build.name] = wheel
                dropped |= {build.replaces} - {""}
            elif build.replaces:
                dropped.add(build.name)  # no wheel of its own: what it replaces stays
        wheels = download_wheels(runner, requirements, platform, skip=frozenset({*built, *dropped}))
        pin_to_wheels(requirements, built, drop=frozenset(dropped))
        _sync_dir(spec.staging / "wheels", [*wheels, *built.values()])
    build_app_wheel(runner, spec, source_dir)
    return spec.staging
