"""The registry-free stand-in base image: debootstrap a Debian rootfs and ``docker import`` it.

No registry is reachable here, so ``FROM python:3.11-slim-bookworm`` cannot be pulled. Instead we
build a Debian bookworm minbase root filesystem with python3, python3-venv, ca-certificates and
tini and import it under the tag the Dockerfiles' ``ARG BASE_IMAGE`` defaults to, so the real
Dockerfiles build unchanged (docs/containers.md lists the differences from the official image).

Cached twice, both keyed on the recipe (``Recipe.key``): the rootfs tarball lives in
``cache_dir()/base-image/<key>.tar`` and the imported image carries the key as a label. A second
run with the same recipe does nothing; a changed recipe (packages, suite, clean-up) rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker.errors
from invoke.exceptions import Exit

from ops.core.project import INFRA_DIR, cache_dir
from ops.core.runner import Runner
from ops.docker import engine

DOCKERFILES = (INFRA_DIR / "docker" / "Dockerfile.service", INFRA_DIR / "docker" / "Dockerfile.cli")
RECIPE_LABEL = "org.llm-optimizer.base-recipe"
_ARG_RE = re.compile(r"^ARG\s+BASE_IMAGE=(\S+)\s*$", re.MULTILINE)


def default_tag(dockerfile: Path = DOCKERFILES[0]) -> str:
    """The ``ARG BASE_IMAGE`` default of a Dockerfile: the tag the stand-in is imported as."""
    match = _ARG_RE.search(dockerfile.read_text())
    if match is None:
        raise Exit(f"{dockerfile} has no `ARG BASE_IMAGE=<image:tag>` line; add one", code=1)
    return match.group(1)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the base image's content; its hash is the cache key."""

    suite: str = "bookworm"
    variant: str = "minbase"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates", "tini")
    # Removed after debootstrap (relative to the rootfs): caches and docs nobody reads in a
    # container; the dpkg database stays so `apt-get install` works in derived images.
    remove: tuple[str, ...] = (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*",
        "var/log/*.log",
        "var/log/apt/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "etc/resolv.conf",
        "etc/hostname",
    )
    # The same dpkg excludes as Debian's official slim images, so later installs stay slim.
    dpkg_excludes: tuple[str, ...] = (
        "path-exclude /usr/share/doc/*",
        "path-include /usr/share/doc/*/copyright",
        "path-exclude /usr/share/man/*",
        "path-exclude /usr/share/info/*",
        "path-exclude /usr/share/locale/*",
    )
    changes: tuple[str, ...] = (
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    )
    schema: int = field(default=1)  # bump when this module's procedure changes

    @property
    def key(self) -> str:
        """A short, stable hash of the recipe."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def tarball_path(recipe: Recipe) -> Path:
    """Where the rootfs tarball for this recipe is cached."""
    path = cache_dir() / "base-image"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{recipe.key}.tar"


def image_recipe_key(tag: str) -> str | None:
    """The recipe key label of the local image ``tag``, or None when there is no such image."""
    api = engine.client()
    try:
        image = api.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    finally:
        api.close()
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    return str(labels.get(RECIPE_LABEL, ""))


def is_current(tag: str, recipe: Recipe) -> bool:
    """True when the image ``tag`` exists and was built from ``recipe``."""
    return image_recipe_key(tag) == recipe.key


def build_rootfs(runner: Runner, recipe: Recipe, tarball: Path) -> None:
    """debootstrap the rootfs, slim it, and pack it into ``tarball`` (atomically)."""
    if os.geteuid() != 0:
        raise Exit(
            "debootstrap needs root; run `sudo uv run invoke docker.base-image` (or as root in CI)",
            code=1,
        )
    engine.ensure_debian_tool(runner, "debootstrap", "debootstrap")
    workdir = Path(tempfile.mkdtemp(prefix="base-rootfs-", dir=tarball.parent))
    rootfs = workdir / "rootfs"
    try:
        runner.run(
            [
                "debootstrap",
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                rootfs,
                recipe.mirror,
            ],
            hint="debootstrap failed; check that the Debian mirror is reachable",
        )
        if runner.dry_run:
            return
        for pattern in recipe.remove:
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        for doc in (rootfs / "usr" / "share" / "doc").glob("*/*"):
            if doc.name != "copyright":  # keep each package's licence
                shutil.rmtree(doc) if doc.is_dir() and not doc.is_symlink() else doc.unlink()
        excludes = rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "docker-excludes"
        excludes.write_text("\n".join(recipe.dpkg_excludes) + "\n")
        partial = tarball.with_suffix(".partial")
        runner.run(["tar", "-C", rootfs, "--numeric-owner", "-cf", partial, "."])
        partial.replace(tarball)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def import_image(runner: Runner, recipe: Recipe, tarball: Path, tag: str) -> None:
    """``docker import`` the tarball as ``tag``, labelled with the recipe key."""
    changes: list[str] = []
    for change in (*recipe.changes, f"LABEL {RECIPE_LABEL}={recipe.key}"):
        changes += ["--change", change]
    runner.run(["docker", "import", *changes, tarball, tag])


def ensure(runner: Runner, *, tag: str | None = None, recipe: Recipe | None = None) -> str:
    """Make sure the stand-in base image exists; return what was done ("cached", ...)."""
    recipe = recipe or Recipe()
    tag = tag or default_tag()
    try:
        if is_current(tag, recipe):
            return "cached"
    except docker.errors.DockerException as exc:  # no engine answers
        detail = str(exc).splitlines()[0][:300]
        if not runner.dry_run:
            raise Exit(
                f"no Docker engine answers ({detail}); start one with "
                "`sudo uv run invoke docker.engine --start` or your usual way",
                code=1,
            ) from None
        # A dry run prints what it would do; without an engine the image counts as missing.
        print(f"[dry-run] no Docker engine answers; {tag} taken as missing", file=sys.stderr)
    tarball = tarball_path(recipe)
    action = "imported from cached rootfs"
    if not tarball.is_file():
        build_rootfs(runner, recipe, tarball)
        action = "built with debootstrap and imported"
    if runner.dry_run:
        print(f"[dry-run] docker import {tarball} {tag}")
        return "dry-run"
    import_image(runner, recipe, tarball, tag)
    return action
