"""``invoke deploy --target systemd``: llm-optimizer.service on this host.

The work is done by ``infra/systemd/install.sh`` and ``uninstall.sh`` (so an operator without
this repository runs exactly the same steps); this module builds the wheel directory they install
from, runs them, and wraps ``systemctl``/``journalctl``. Every command line is built by one helper
below (:func:`systemctl`, :func:`journalctl`, :func:`install_argv`, :func:`uninstall_argv`) and run
through :mod:`ops.core.runner`; the ``invoke systemd.*`` tasks call the same functions.
The paths and the user are this module's constants, the one source the tests check install.sh
and the unit against.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project
from ops.core.runner import Runner, runner_for
from ops.deploy.base import Invocation, Target
from ops.deploy.environments import ENVIRONMENTS, require
from ops.deploy.prerequisites import Prerequisite

UNIT: Final = project.SYSTEMD_UNIT
SYSTEMD_DIR: Final = project.INFRA_DIR / "systemd"
# The REST and metrics sockets, held by systemd across restarts (socket activation).
SOCKET_UNIT: Final = UNIT.removesuffix(".service") + ".socket"
INSTALL_SCRIPT: Final = SYSTEMD_DIR / "install.sh"
UNINSTALL_SCRIPT: Final = SYSTEMD_DIR / "uninstall.sh"
# The same values as install.sh's readonly variables and the unit's paths (a test compares them).
SERVICE_USER: Final = project.PROJECT
DEFAULT_PREFIX: Final = f"/opt/{project.PROJECT}"
CONFIG_DIR: Final = Path(f"/etc/{project.PROJECT}")
DATA_DIR: Final = Path(f"/var/lib/{project.PROJECT}")
ENV_FILE: Final = CONFIG_DIR / f"{project.PROJECT}.env"
DROPIN_DIR: Final = Path("/etc/systemd/system") / f"{UNIT}.d"
# Written by `deploy --env dev` only; `--env prod` removes it again.
DEV_DROPIN: Final = DROPIN_DIR / "50-deploy-environment.conf"
WHEEL_DIR: Final = project.ROOT / "build" / "systemd" / "wheels"
MACHINES: Final = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64"}


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


def configure_environment(runner: Runner, env: str) -> None:
    """dev: a drop-in with the dev environment's service settings; prod: no such drop-in."""
    if env == "dev":
        settings = ENVIRONMENTS["dev"].service_settings
        content = "[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in settings.items())
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
        f"set {project.env('auth', 'api_keys_file')} in {ENV_FILE} (see docs/systemd.md), then "
        "run: uv run invoke systemd.status",
        code=1,
    )


def apply(c: Context, *, env: str, dry_run: bool) -> None:
    """Install (or upgrade) on this host, configure ``env`` and (re)start."""
    require(env)
    runner = runner_for(c, dry_run=dry_run)
    wheels = build_wheels(runner)
    runner.run(install_argv(wheel_dir=wheels))
    configure_environment(runner, env)
    start_and_check(runner)
    runner.run(systemctl("status", "--no-pager", UNIT), check=False)


def status(c: Context) -> int:
    """The unit's status; 0 when it is active, else 3."""
    runner = Runner(ctx=c, echo=False)
    runner.run(systemctl("status", "--no-pager", "--full", UNIT, SOCKET_UNIT), check=False)
    state = runner.output(systemctl("is-active", UNIT), check=False) or "unknown"
    if state != "active":
        print(f"{UNIT} is {state}; see: uv run invoke systemd.logs")
        return 3
    return 0


def endpoint(env_file: Path = ENV_FILE) -> tuple[str, str, Path | None]:
    """Where the unit serves on this host, from its environment file (the socket unit's ports
    unless the operator moved them): the REST URL, the metrics URL and the API keys file
    (None when the file names none or cannot be read)."""
    settings: dict[str, str] = {}
    try:
        for line in env_file.read_text().splitlines():
            name, _, value = line.strip().partition("=")
            if name.startswith(project.ENV_PREFIX):
                settings[name] = value.strip().strip("'\"")
    except OSError:
        pass
    http = settings.get(project.env("server", "http_port"), str(project.HTTP_PORT))
    metrics = settings.get(project.env("server", "metrics_port"), str(project.METRICS_PORT))
    keys = settings.get(project.env("auth", "api_keys_file"))
    return (
        f"http://127.0.0.1:{http}",
        f"http://127.0.0.1:{metrics}/metrics",
        Path(keys) if keys else None,
    )


def restart(c: Context) -> None:
    """``systemctl restart`` the unit (returns once the new process said READY=1)."""
    start_and_check(runner_for(c))


def down(c: Context, *, dry_run: bool) -> None:
    """Stop and remove the unit and the installed venv with uninstall.sh; data and
    configuration stay (``invoke systemd.uninstall --purge`` removes them too)."""
    runner = runner_for(c, dry_run=dry_run)
    if not runner.dry_run:
        require_root("uninstall")
    runner.run(uninstall_argv())


def service_command(
    c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
) -> Invocation:
    """On this host, ``systemd-run --pipe --wait`` as the unit's user with the unit's settings
    (its environment file and data dir), so the command sees exactly the service's settings."""
    properties = [
        f"--property=User={SERVICE_USER}",
        f"--property=Group={SERVICE_USER}",
        f"--property=Environment={project.env('environment')}=production",
        f"--property=Environment={project.env('data_dir')}={DATA_DIR}",
        f"--property=EnvironmentFile=-{ENV_FILE}",
    ]
    return Invocation(
        [
            "systemd-run",
            "--quiet",
            "--pipe",
            "--wait",
            "--collect",
            "--service-type=exec",
            *properties,
            str(Path(DEFAULT_PREFIX) / "venv" / "bin" / project.SERVICE_COMMAND),
            *args,
        ]
    )


TARGET = Target(
    "systemd",
    f"a systemd unit on this host ({DEFAULT_PREFIX}, {UNIT})",
    apply=apply,
    status=status,
    down=down,
    service_command=service_command,
    prerequisites=(Prerequisite("root"), Prerequisite("systemd-host")),
    restart=restart,
)
