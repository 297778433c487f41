"""Is a Docker engine answering? Start ``dockerd`` where none runs (docs/containers.md).

There is no systemd on these machines, so ``ensure_running`` starts the daemon itself, detached,
with its log in ``state_dir()/dockerd.log``, and polls the engine until it answers. It is
idempotent: when an engine already answers (ours, a system one, or one named by ``DOCKER_HOST``)
nothing is started. Installing ``docker.io`` with apt needs root; without root the error names the
exact command to run.

Used by ``invoke docker.engine [--start]`` and by the session fixture in
``tests/_support/docker.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from invoke.exceptions import Exit

from ops.core import tools
from ops.core.project import state_dir
from ops.core.runner import Runner

SOCKET = Path("/var/run/docker.sock")
HOST = f"unix://{SOCKET}"
PIDFILE = Path("/var/run/docker.pid")
DEBIAN_PACKAGE = "docker.io"  # dockerd, containerd, runc and a 20.10 client with BuildKit
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class EngineStatus:
    """What the engine said (or why it did not answer)."""

    answering: bool
    server_version: str = ""
    storage_driver: str = ""
    cgroup_version: str = ""
    detail: str = ""

    def describe(self) -> str:
        """One line for humans."""
        if not self.answering:
            return f"no Docker engine answers: {self.detail}"
        return (
            f"Docker engine {self.server_version} answers "
            f"(storage {self.storage_driver}, cgroup v{self.cgroup_version})"
        )


def client(timeout: int = 120) -> docker.DockerClient:
    """A Docker SDK client for the engine (``DOCKER_HOST`` if set, else the local socket)."""
    if os.environ.get("DOCKER_HOST"):
        return docker.from_env(timeout=timeout)
    return docker.DockerClient(base_url=HOST, timeout=timeout)


def status(timeout: int = 5) -> EngineStatus:
    """Ask the engine for ``info``; never raises."""
    try:
        api = client(timeout=timeout)
        try:
            info = api.info()
        finally:
            api.close()
    except (docker.errors.DockerException, OSError) as exc:
        return EngineStatus(answering=False, detail=str(exc).splitlines()[0][:300])
    return EngineStatus(
        answering=True,
        server_version=str(info.get("ServerVersion", "")),
        storage_driver=str(info.get("Driver", "")),
        cgroup_version=str(info.get("CgroupVersion", "")),
    )


def log_path() -> Path:
    """Where a dockerd we start writes its log."""
    return state_dir() / "dockerd.log"


def _is_root() -> bool:
    return os.geteuid() == 0


def apt_install_argv(package: str) -> list[str]:
    """The apt-get command that installs one Debian package (waiting for a busy dpkg lock)."""
    return [
        "apt-get",
        "-o",
        "DPkg::Lock::Timeout=600",  # other setup steps may hold the dpkg lock; wait, don't fail
        "install",
        "-y",
        "--no-install-recommends",
        package,
    ]


def ensure_debian_tool(runner: Runner, tool: str, package: str) -> None:
    """Install ``package`` with apt when ``tool`` is missing; root only, else say what to run."""
    if tools.which(tool) is not None:
        return
    argv = apt_install_argv(package)
    if not _is_root():
        raise Exit(
            f"{tool} is not installed and installing it needs root; run: sudo {' '.join(argv)}",
            code=1,
        )
    runner.run(
        argv,
        env={"DEBIAN_FRONTEND": "noninteractive"},
        hint=f"installing {package} failed; run `apt-get update` and retry: {' '.join(argv)}",
    )


def start_argv() -> list[str]:
    """The dockerd command line (relative name; resolved through the tool catalogue)."""
    return ["dockerd", "--host", HOST, "--pidfile", str(PIDFILE)]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_running(runner: Runner, *, timeout: float = START_TIMEOUT_S) -> EngineStatus:
    """Return the engine's status, starting dockerd first if no engine answers.

    Idempotent: an answering engine is left alone. Raises ``Exit`` (with the fix) when the
    engine cannot be started.
    """
    current = status()
    if current.answering:
        return current
    if os.environ.get("DOCKER_HOST"):
        raise Exit(
            f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer ({current.detail}); "
            "start that engine or unset DOCKER_HOST to use a local dockerd",
            code=1,
        )
    if not _is_root():
        raise Exit(
            "no Docker engine answers and starting dockerd needs root; run "
            "`sudo uv run invoke docker.engine --start` or start Docker your usual way",
            code=1,
        )
    ensure_debian_tool(runner, "dockerd", DEBIAN_PACKAGE)
    argv = start_argv()
    log = log_path()
    if runner.dry_run:
        print(f"[dry-run] {' '.join(argv)} >{log} 2>&1 &", file=sys.stderr, flush=True)
        return current
    resolved = [str(tools.require(argv[0])), *argv[1:]]
    print(f"+ {' '.join(argv)} >{log} 2>&1 &", file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Detached on purpose: the daemon outlives this process (and the test session).
        process = subprocess.Popen(
            resolved,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status()
        if current.answering:
            return current
        if process.poll() is not None:
            raise Exit(
                f"dockerd exited with code {process.returncode} before answering; "
                f"its log ({log}) ends with:\n{_tail(log)}",
                code=1,
            )
        time.sleep(0.5)
    raise Exit(
        f"dockerd did not answer within {timeout:.0f} s (pid {process.pid}); see {log}:\n"
        f"{_tail(log)}",
        code=1,
    )
