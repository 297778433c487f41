"""Run an aarch64 program on this x86_64 machine: qemu-user-static through binfmt_misc.

Used to prove that the linux-aarch64 pex really runs. The arm64 Debian root filesystem with
python3 is made without emulation: ``debootstrap --foreign`` downloads the packages and the
host's ``dpkg-deb -x`` unpacks them (python needs no maintainer scripts to run), which takes
about a minute instead of the quarter hour an emulated second stage takes. It is cached under
``cache_dir()/foreign/<key>/``; programs run in it with ``chroot``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from invoke.exceptions import Exit

from ops.core.project import cache_dir
from ops.core.runner import Runner
from ops.docker import engine

SUITE: Final = "bookworm"
MIRROR: Final = "http://deb.debian.org/debian"
ARCH: Final = "arm64"
PACKAGES: Final = ("python3",)
BINFMT_DIR: Final = Path("/proc/sys/fs/binfmt_misc")
QEMU_BINFMT_CONF: Final = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
RECIPE_KEY: Final = hashlib.sha256(f"{SUITE} {ARCH} {PACKAGES} {MIRROR} v1".encode()).hexdigest()[
    :16
]


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise Exit(f"{what} needs root; run it as root (CI does)", code=1)


def ensure_binfmt(runner: Runner) -> None:
    """Register qemu-aarch64 with binfmt_misc (mounting it first if needed); idempotent."""
    if (BINFMT_DIR / "qemu-aarch64").is_file():
        return
    _require_root("registering qemu-aarch64 with binfmt_misc")
    engine.ensure_debian_tool(runner, "qemu-aarch64-static", "qemu-user-static")
    if not (BINFMT_DIR / "register").exists():
        runner.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
    if runner.dry_run:
        return
    line = next(
        entry
        for entry in QEMU_BINFMT_CONF.read_text().splitlines()
        if entry and not entry.startswith("#")
    )
    (BINFMT_DIR / "register").write_text(line)


def python_rootfs(runner: Runner) -> Path:
    """An arm64 Debian root filesystem with python3 (cached); returns its path."""
    home = cache_dir() / "foreign" / RECIPE_KEY
    rootfs = home / "rootfs"
    if (home / "complete").is_file():
        return rootfs
    _require_root("debootstrap")
    engine.ensure_debian_tool(runner, "debootstrap", "debootstrap")
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="rootfs-", dir=home))
    try:
        runner.run(
            ["debootstrap", "--foreign", f"--arch={ARCH}", "--variant=minbase",
             f"--include={','.join(PACKAGES)}", SUITE, staging, MIRROR],
            hint="debootstrap failed; check that the Debian mirror is reachable",
        )  # fmt: skip
        if runner.dry_run:
            return rootfs
        for deb in sorted((staging / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            runner.run(["dpkg-deb", "--extract", deb, staging], capture=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        staging.rename(rootfs)
        (home / "complete").write_text(RECIPE_KEY + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rootfs


def run_python(
    runner: Runner, rootfs: Path, program: Path, *args: str, timeout: float = 900
) -> str:
    """Copy ``program`` into the rootfs and run it with the rootfs's python3; return stdout."""
    inside = "/tmp"
    target = rootfs / "tmp" / program.name
    shutil.copyfile(program, target)
    try:
        return runner.output(
            ["chroot", rootfs, "/usr/bin/python3", f"{inside}/{program.name}", *args],
            env={"PEX_ROOT": f"{inside}/pex-root", "HOME": inside},
            timeout=timeout,
        )
    finally:
        target.unlink(missing_ok=True)
