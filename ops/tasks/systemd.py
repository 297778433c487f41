"""Invoke collection: systemd — install, uninstall and inspect llm-optimizer.service on this host.

The work is done by ``infra/systemd/install.sh`` and ``uninstall.sh`` (so an operator without
this repository runs exactly the same steps); these tasks build the wheel directory they install
from, run them, and wrap ``systemctl``/``journalctl``. Every command line is built by one helper
below (:func:`systemctl`, :func:`journalctl`, :func:`install_argv`, :func:`uninstall_argv`) and run
through :mod:`ops.core.runner`. ``invoke deploy --target systemd`` calls :func:`deploy_target`.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Final

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core import project
from ops.core.runner import Runner, runner_for

UNIT: Final = project.SYSTEMD_UNIT
SYSTEMD_DIR: Final = project.INFRA_DIR / "systemd"
INSTALL_SCRIPT: Final = SYSTEMD_DIR / "install.sh"
UNINSTALL_SCRIPT: Final = SYSTEMD_DIR / "uninstall.sh"
DEFAULT_PREFIX: Final = "/opt/llm-optimizer"
CONFIG_DIR: Final = Path("/etc/llm-optimizer")
ENV_FILE: Final = CONFIG_DIR / "llm-optimizer.env"
DROPIN_DIR: Final = Path("/etc/systemd/system") / f"{UNIT}.d"
# Written by `deploy --env dev` only; `--env prod` removes it again.
DEV_DROPIN: Final = DROPIN_DIR / "50-deploy-environment.conf"
WHEEL_DIR: Final = project.ROOT / "build" / "systemd" / "wheels"
MACHINES: Final = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64"}

PREFIX_HELP = f"install prefix (default {DEFAULT_PREFIX})"
DRY_RUN_HELP = "print every command and change nothing"


# --- command lines (the one place they are built) ---------------------------------------------


def systemctl(*args: str) -> list[str]:
    """A ``systemctl`` command line for the system manager."""
    return ["systemctl", *args]


def journalctl(*args: str) -> list[str]:
    """A ``journalctl`` command line for the unit's journal."""
    return ["journalctl", "--unit", UNIT, "--no-pager", *args]


def install_argv(
    *,
    wheel_dir: Path,
    prefix: str = DEFAULT_PREFIX,
    destdir: Path | None = None,
    start: bool = False,
    enable: bool = True,
) -> list[str]:
    """The install.sh command line."""
    argv = ["bash", str(INSTALL_SCRIPT), "--wheel-dir", str(wheel_dir), "--prefix", prefix]
    if destdir is not None:
        argv += ["--destdir", str(destdir)]
    if start:
        argv.append("--start")
    if not enable:
        argv.append("--no-enable")
    return argv


def uninstall_argv(
    *, prefix: str = DEFAULT_PREFIX, destdir: Path | None = None, purge: bool = False
) -> list[str]:
    """The uninstall.sh command line."""
    argv = ["bash", str(UNINSTALL_SCRIPT), "--prefix", prefix]
    if destdir is not None:
        argv += ["--destdir", str(destdir)]
    if purge:
        argv.append("--purge")
    return argv


# --- helpers ------------------------------------------------------------------------------------


def require_root(action: str) -> None:
    """Refuse, with the fix, when not root."""
    if os.geteuid() != 0:
        raise Exit(
            f"systemd.{action} needs root (it manages a system service); run it as root, "
            f"e.g. sudo -E uv run invoke systemd.{action}",
            code=1,
        )


def host_platform() -> str:
    """The Docker-style platform of this machine (wheels are downloaded for it)."""
    machine = platform.machine().lower()
    if machine not in MACHINES:
        raise Exit(
            f"no wheels for this machine ({machine}); supported: {', '.join(sorted(MACHINES))}",
            code=1,
        )
    return MACHINES[machine]


def build_wheels(runner: Runner, out: Path = WHEEL_DIR, target_platform: str = "") -> Path:
    """Fill ``out`` with exactly what install.sh needs: the service's wheel, its locked
    dependencies' wheels and their ``requirements.txt`` (pins with hashes, from uv.lock).

    Dependency wheels come from the shared wheelhouse cache (the same locked, hash-checked set
    the service image installs, see ops.docker.build_context); our own wheel is built fresh.
    """
    from ops.docker import build_context

    spec = build_context.IMAGES["service"]
    requirements = out.parent / "requirements.txt"
    build_context.export_requirements(runner, spec, requirements)
    if runner.dry_run:
        print(f"[dry-run] download the locked wheels and build {spec.dist} into {out}")
        return out
    dependencies = build_context.download_wheels(
        runner, requirements, target_platform or host_platform()
    )
    with tempfile.TemporaryDirectory(prefix="llm-optimizer-wheel-") as tmp:
        runner.run(["uv", "build", "--quiet", "--wheel", f"--out-dir={tmp}", spec.source_dir])
        ours = sorted(Path(tmp).glob("*.whl"))
        if len(ours) != 1:
            raise Exit(f"expected one wheel from `uv build`, found {len(ours)}", code=1)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for wheel in [*dependencies, ours[0]]:
            shutil.copy2(wheel, out / wheel.name)
        # install.sh installs exactly these pins, checked against the lock's hashes.
        shutil.copy2(requirements, out / "requirements.txt")
    return out


def _wheel_dir(runner: Runner, wheel_dir: str) -> Path:
    return Path(wheel_dir).resolve() if wheel_dir else build_wheels(runner)


def configure_environment(runner: Runner, env: str) -> None:
    """dev: a drop-in that runs the service in development mode; prod: no such drop-in."""
    if env == "dev":
        content = "[Service]\nEnvironment=LLM_OPTIMIZER_ENVIRONMENT=development\n"
        if runner.dry_run:
            print(f"[dry-run] write {DEV_DROPIN}: {content!r}")
            return
        DROPIN_DIR.mkdir(parents=True, exist_ok=True)
        DEV_DROPIN.write_text(
            "# Written by `invoke deploy --target systemd --env dev`; --env prod removes it.\n"
            + content
        )
    elif DEV_DROPIN.exists():
        if runner.dry_run:
            print(f"[dry-run] remove {DEV_DROPIN}")
            return
        DEV_DROPIN.unlink()


def start_and_check(runner: Runner) -> None:
    """(Re)start the unit; systemctl returns once the service said READY=1, or it failed."""
    runner.run(systemctl("daemon-reload"))
    result = runner.run(systemctl("restart", UNIT), check=False)
    if result is None or result.exited == 0:
        return
    runner.run(journalctl("--lines", "30"), check=False)
    raise Exit(
        f"{UNIT} failed to start; the journal above says why. In production it needs API keys: "
        f"set LLM_OPTIMIZER_AUTH__API_KEYS_FILE in {ENV_FILE} (see docs/systemd.md), then "
        "run: uv run invoke systemd.status",
        code=1,
    )


def deploy_target(c: Context, *, env: str, dry_run: bool) -> None:
    """`invoke deploy --target systemd`: install (or upgrade) on this host and (re)start."""
    runner = runner_for(c, dry_run=dry_run)
    wheels = build_wheels(runner)
    runner.run(install_argv(wheel_dir=wheels))
    configure_environment(runner, env)
    start_and_check(runner)
    runner.run(systemctl("status", "--no-pager", UNIT), check=False)


# --- tasks --------------------------------------------------------------------------------------


@task(help={"out": f"directory to fill (default {WHEEL_DIR.relative_to(project.ROOT)})"})
def wheels(c: Context, out: str = "") -> None:
    """Build the wheel directory install.sh installs from (the service and its locked deps)."""
    path = build_wheels(runner_for(c), Path(out).resolve() if out else WHEEL_DIR)
    print(path)


@task(
    help={
        "prefix": PREFIX_HELP,
        "wheel_dir": "install from these wheels (default: build them first)",
        "start": "start (or restart after an upgrade) the service once installed",
        "dry_run": DRY_RUN_HELP,
    }
)
def install(
    c: Context,
    prefix: str = DEFAULT_PREFIX,
    wheel_dir: str = "",
    start: bool = False,
    dry_run: bool = False,
) -> None:
    """Install llm-optimizer.service on this host with infra/systemd/install.sh (root)."""
    runner = runner_for(c, dry_run=dry_run)
    if not runner.dry_run:
        require_root("install")
    runner.run(install_argv(wheel_dir=_wheel_dir(runner, wheel_dir), prefix=prefix, start=start))


@task(
    help={
        "prefix": PREFIX_HELP,
        "purge": "also delete the data, the configuration and the system user",
        "dry_run": DRY_RUN_HELP,
    }
)
def uninstall(
    c: Context, prefix: str = DEFAULT_PREFIX, purge: bool = False, dry_run: bool = False
) -> None:
    """Remove llm-optimizer.service with infra/systemd/uninstall.sh; keeps data unless --purge."""
    runner = runner_for(c, dry_run=dry_run)
    if not runner.dry_run:
        require_root("uninstall")
    runner.run(uninstall_argv(prefix=prefix, purge=purge))


@task
def status(c: Context) -> None:
    """Show the unit's status; exits non-zero unless it is active."""
    require_root("status")
    runner = runner_for(c)
    runner.run(systemctl("status", "--no-pager", "--full", UNIT), check=False)
    state = runner.output(systemctl("is-active", UNIT), check=False) or "unknown"
    if state != "active":
        raise Exit(f"{UNIT} is {state}; see: uv run invoke systemd.logs", code=3)


@task(
    help={
        "lines": "how many recent lines to show (default 100)",
        "follow": "keep printing new lines",
        "since": "only lines since this time, e.g. '10 min ago' or '2026-01-01 12:00'",
    }
)
def logs(c: Context, lines: int = 100, follow: bool = False, since: str = "") -> None:
    """Show the service's journal (journald is its only log destination)."""
    require_root("logs")
    argv = journalctl("--lines", str(lines))
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("--follow")
    runner_for(c).run(argv)
