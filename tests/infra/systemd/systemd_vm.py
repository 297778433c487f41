"""A stand-in VM for the systemd tests: a container whose PID 1 is a real systemd.

The image is the stand-in base image plus ``systemd systemd-sysv`` (systemd-host.Dockerfile),
tagged by a hash of that Dockerfile and the base image's id, so it is built once and reused.

The container gets its own cgroup subtree only (``--cgroupns=private``, no bind mount of the
host's /sys/fs/cgroup; the image's boot script remounts that subtree writable): systemd inside
manages its services without touching the host's cgroups. On a cgroup v1 host, bind-mounting
/sys/fs/cgroup would let it create and remove cgroups in the host's hierarchies.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.core.project import SYSTEMD_UNIT

HERE = Path(__file__).resolve().parent
HOST_DOCKERFILE = HERE / "systemd-host.Dockerfile"
IMAGE_REPOSITORY = "llm-optimizer-systemd-host"
BOOT_TIMEOUT_S = 60.0
RUN_FLAGS = (
    "--cap-add",
    "SYS_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=private",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
)


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; fail the test with its output when it fails; return stdout."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result.stdout


def host_image(docker: Path, base: str) -> str:
    """The systemd host image built on ``base`` (built only when this pair is new)."""
    base_id = run([str(docker), "image", "inspect", "--format", "{{.Id}}", base]).strip()
    key = hashlib.sha256(HOST_DOCKERFILE.read_bytes() + base_id.encode()).hexdigest()[:12]
    tag = f"{IMAGE_REPOSITORY}:{key}"
    present = subprocess.run(
        [str(docker), "image", "inspect", tag], capture_output=True, check=False
    )
    if present.returncode != 0:
        started = time.monotonic()
        run(
            [
                str(docker),
                "build",
                "--quiet",
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--tag",
                tag,
                "--file",
                str(HOST_DOCKERFILE),
                str(HERE),
            ],
            env={"DOCKER_BUILDKIT": "1"},
        )
        print(f"built {tag} in {time.monotonic() - started:.1f} s")
    return tag


@dataclass
class SystemdHost:
    """A running container whose PID 1 is systemd."""

    docker: Path
    name: str

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a bash script inside, as root."""
        result = subprocess.run(
            [str(self.docker), "exec", self.name, "bash", "-Eeuo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"in {self.name}: {script!r} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def out(self, script: str) -> str:
        """stdout of a script that must succeed, stripped."""
        return self.sh(script).stdout.strip()

    def copy_in(self, source: Path, target: str) -> None:
        """Copy the contents of a host directory into a directory of the VM."""
        run([str(self.docker), "cp", f"{source}/.", f"{self.name}:{target}"])

    def unit(self, *properties: str) -> dict[str, str]:
        """``systemctl show`` properties of the service."""
        args = " ".join(f"-p {p}" for p in properties)
        text = self.out(f"systemctl show {args} {SYSTEMD_UNIT}")
        return dict(line.split("=", 1) for line in text.splitlines())

    def state(self) -> str:
        """``systemctl is-active`` of the service (it exits non-zero unless active)."""
        return self.sh(f"systemctl is-active {SYSTEMD_UNIT}", check=False).stdout.strip()

    def journal(self, lines: int = 60) -> str:
        """The service's recent journal, messages only."""
        return self.out(f"journalctl -u {SYSTEMD_UNIT} --no-pager -o cat -n {lines}")

    def http_status(self, path: str, port: int = 8080) -> int:
        """Status of GET http://127.0.0.1:{port}{path} inside the VM; 0 when nothing answers."""
        script = (
            "import urllib.request, urllib.error\n"
            "try:\n"
            f"    url = 'http://127.0.0.1:{port}{path}'\n"
            "    print(urllib.request.urlopen(url, timeout=5).status)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
            "except OSError:\n"
            "    print(0)\n"
        )
        return int(self.out(f"python3 -c {shlex.quote(script)}"))

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        """Poll ``predicate()`` until true; return the seconds it took, or fail naming ``what``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.25)
        journal = self.sh(f"journalctl -u {SYSTEMD_UNIT} --no-pager -n 40", check=False).stdout
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\njournal:\n{journal}")


@contextmanager
def booted(docker: Path, image: str) -> Iterator[SystemdHost]:
    """A fresh VM booted with systemd; stopped and removed afterwards, even on failure."""
    name = f"llm-optimizer-systemd-{uuid.uuid4().hex[:8]}"
    run([str(docker), "run", "--detach", "--name", name, *RUN_FLAGS, image])
    host = SystemdHost(docker, name)
    try:
        host.wait_for(
            "systemd to finish booting",
            lambda: (
                host.sh("systemctl is-system-running", check=False).stdout.strip()
                in ("running", "degraded")
            ),
            timeout=BOOT_TIMEOUT_S,
        )
        yield host
    finally:
        # A clean shutdown lets systemd remove the cgroups it made before the container goes.
        subprocess.run(
            [str(docker), "stop", "--time", "20", name], capture_output=True, check=False
        )
        subprocess.run([str(docker), "rm", "--force", name], capture_output=True, check=False)
