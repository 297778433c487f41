"""End to end under a real systemd: install.sh on a stand-in VM, then the unit's whole life.

The VM is a container from the stand-in base image plus systemd, booted with systemd as PID 1
(see conftest.py). The tests run in file order against one VM: install, start (Type=notify),
stop, kill -9, watchdog, uninstall, purge. Each prints its timings.

A drop-in the test writes changes two things (the shipped unit stays as it is):
``WatchdogSec=10`` instead of 30, so a stall is caught in seconds, and the environment that
loads the test-only stall hook (``tests/_support/stall.py``: ``SIGUSR2`` then blocks the event
loop; the service itself has no such knob).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from invoke.config import Config
from invoke.context import Context

from ops.deploy import service_cli, targets, verify
from ops.deploy import systemd as systemd_target
from ops.deploy.base import Invocation, Target
from tests._support.stall import STALL_HOOK_DIR, stall_env
from tests.infra.systemd.systemd_vm import SystemdHost
from tests.infra.systemd.systemd_vm import run as systemd_vm_run

pytestmark = [pytest.mark.systemd, pytest.mark.docker, pytest.mark.slow]

UNIT = systemd_target.UNIT
RELEASE_DIR = (
    "/srv/release"  # where the test puts infra/systemd and the wheels, as an operator would
)
API_KEY = "e2e-test-key-not-a-secret-0123456789abcdef"  # production: >= 32 characters
WATCHDOG_SEC = 10
STALL_HOOK = f"{RELEASE_DIR}/stall_hook"
TEST_DROPIN = f"""[Service]
WatchdogSec={WATCHDOG_SEC}
""" + "".join(f"Environment={key}={value}\n" for key, value in stall_env(120, STALL_HOOK).items())
# Paths outside the data dir that may legitimately differ after a purge: the journal, the
# passwd/group backups and lock useradd/userdel and systemd-sysusers leave, our release copy.
IGNORED_AFTER_PURGE = (
    "/var/log/journal",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/.pwd.lock",
    "/etc/subuid-",
    "/etc/subgid-",
)


def snapshot(host: SystemdHost) -> set[str]:
    """Every path on the VM's root file system, except virtual and scratch ones."""
    listing = host.out(
        "find / -xdev \\( -path /proc -o -path /sys -o -path /run -o -path /tmp "
        f"-o -path /dev -o -path {RELEASE_DIR} -o -path /var/log/journal \\) -prune -o -print"
    )
    return set(listing.splitlines())


@pytest.fixture(scope="module")
def installed(systemd_host: SystemdHost, wheel_dir: Path) -> dict[str, object]:
    """install.sh run inside the VM as an operator would, then API keys configured."""
    host = systemd_host
    before = snapshot(host)
    host.sh(f"mkdir -p {RELEASE_DIR}/wheels")
    host.copy_in(systemd_target.SYSTEMD_DIR, RELEASE_DIR)
    host.sh(f"mkdir -p {STALL_HOOK}")
    host.copy_in(STALL_HOOK_DIR, STALL_HOOK)
    host.sh(f"chmod -R a+rX {STALL_HOOK}")  # the unit runs with PrivateUsers=yes
    host.copy_in(wheel_dir, f"{RELEASE_DIR}/wheels")
    started = time.monotonic()
    output = host.out(f"bash {RELEASE_DIR}/install.sh --wheel-dir {RELEASE_DIR}/wheels")
    install_seconds = time.monotonic() - started
    print(f"install.sh inside the VM: {install_seconds:.1f} s")
    host.sh(
        f"""
        umask 027
        echo {shlex.quote(API_KEY)} > /etc/llm-optimizer/api-keys
        chgrp llm-optimizer /etc/llm-optimizer/api-keys
        echo LLM_OPTIMIZER_AUTH__API_KEYS_FILE=/etc/llm-optimizer/api-keys \\
          >> /etc/llm-optimizer/llm-optimizer.env
        mkdir -p /etc/systemd/system/{UNIT}.d
        printf %s {shlex.quote(TEST_DROPIN)} > /etc/systemd/system/{UNIT}.d/50-test.conf
        systemctl daemon-reload
        """
    )
    return {"before": before, "install_output": output}


def test_install_enables_but_does_not_start(
    systemd_host: SystemdHost, installed: dict[str, object]
) -> None:
    host = systemd_host
    assert "created system user llm-optimizer" in str(installed["install_output"])
    assert host.out(f"systemctl is-enabled {UNIT}") == "enabled"
    assert host.state() == "inactive"
    assert host.out("stat -c '%U:%G %a' /etc/llm-optimizer") == "root:llm-optimizer 750"
    assert host.out("stat -c '%U:%G %a' /etc/llm-optimizer/llm-optimizer.env") == (
        "root:llm-optimizer 640"
    )


def test_installed_unit_verifies_clean(systemd_host: SystemdHost, installed: object) -> None:
    """systemd-analyze verify on the installed unit, real paths and user: empty stderr."""
    result = systemd_host.sh(f"systemd-analyze verify {UNIT}", check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unit_is_active_only_once_the_service_is_ready(
    systemd_host: SystemdHost, installed: object
) -> None:
    """Type=notify: while systemd says 'activating' nothing is ready yet; once it says
    'active', /health/ready is 200 — sampled state first, then readiness, so no race helps."""
    host = systemd_host
    host.sh(f"systemctl reset-failed {UNIT} || true; systemctl start --no-block {UNIT}")
    samples: list[tuple[str, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < 120:
        state = host.state()
        samples.append((state, host.http_status("/health/ready")))
        if state == "active" or state == "failed":
            break
    activating = [s for s in samples if s[0] == "activating"]
    print(f"start: active after {time.monotonic() - started:.1f} s; samples {samples}")
    assert samples[-1][0] == "active", samples
    assert activating, f"never saw 'activating' (not waiting for READY=1?): {samples}"
    assert all(code == 200 for state, code in samples if state == "active"), samples
    times = host.unit("ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    waited = (
        int(times["ActiveEnterTimestampMonotonic"]) - int(times["ExecMainStartTimestampMonotonic"])
    ) / 1e6
    print(f"systemd waited {waited:.2f} s between starting serve and READY=1")
    assert waited > 0.2
    assert host.http_status("/health/live") == 200


def _on_target_systemd(host: SystemdHost, *args: str, running: bool = False) -> str:
    """``llm-optimizer-service ARGS`` through the `--target systemd` command line of the db and
    health tasks (ops.deploy.service_cli), run inside the VM as an operator on that host would."""
    call = service_cli.invocation(Context(Config()), "systemd", args, in_running_service=running)
    return host.out(shlex.join(call.argv))


def test_db_backup_and_health_through_the_systemd_target(
    systemd_host: SystemdHost, installed: object
) -> None:
    """As the unit's user with its environment file: the schema is at head, a backup of the
    running service's SQLite lands in the default dir owned by that user and verifies, and a
    restore (service stopped, as SQLite needs) brings the service back healthy."""
    host = systemd_host
    host.sh(f"systemctl start {UNIT}")
    backups = "/var/lib/llm-optimizer/backups"
    try:
        assert "(head)" in _on_target_systemd(host, "db", "current")
        created = json.loads(_on_target_systemd(host, "backup", "create", "--json"))
        archive = str(created["path"])
        assert archive.startswith(f"{backups}/"), created
        assert host.out(f"stat -c '%U %a' {shlex.quote(archive)}") == "llm-optimizer 600"
        verified = json.loads(_on_target_systemd(host, "backup", "verify", archive, "--json"))
        assert verified["ok"] is True, verified
        host.sh(f"systemctl stop {UNIT}")
        _on_target_systemd(host, "backup", "restore", archive, "--force")
        host.sh(f"systemctl start {UNIT}")
        assert (
            json.loads(_on_target_systemd(host, "health", "--json", running=True))["status"]
            == "healthy"
        )
    finally:
        host.sh(f"rm -rf {backups}")


class VmTarget:
    """The systemd target as `invoke verify` drives it, with its commands run inside the VM:
    the restart is `systemctl restart`, the service's CLI the target's own `systemd-run` line."""

    def __init__(self, host: SystemdHost) -> None:
        self.host = host
        self.restarts: list[tuple[str, str]] = []

    def restart(self, c: Context) -> None:
        old = self.host.unit("MainPID")["MainPID"]
        self.host.sh(shlex.join(systemd_target.systemctl("restart", UNIT)))
        self.restarts.append((old, self.host.unit("MainPID")["MainPID"]))

    def service_command(
        self, c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
    ) -> Invocation:
        inside = systemd_target.service_command(c, args, mounts=mounts, running=running)
        return Invocation([str(self.host.docker), "exec", self.host.name, *inside.argv])

    def target(self) -> Target:
        return replace(
            systemd_target.TARGET, restart=self.restart, service_command=self.service_command
        )


def test_verify_passes_every_check_on_the_systemd_deployment(
    systemd_host: SystemdHost,
    installed: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`invoke verify`'s suite (ops/deploy/verify.py) from this host against the VM's address:
    health, round trip, the contract's metrics, `systemctl restart` under steady decide +
    feedback load with no failed request (socket activation: llm-optimizer.socket holds the REST
    and metrics sockets, so connections wait in the kernel's queue during the restart), and a
    backup plus its verify through the target's `systemd-run` line."""
    host = systemd_host
    host.sh(f"systemctl reset-failed {UNIT} || true; systemctl start {UNIT}")
    assert host.out(f"systemctl is-active {systemd_target.SOCKET_UNIT}") == "active"
    # The service took systemd's sockets rather than binding 8080 and 9090 itself.
    assert re.search(r"handed_over\W+\[8080, 9090\]", host.journal(40)), host.journal(40)
    address = host_address(host)
    vm = VmTarget(host)
    target = vm.target()
    monkeypatch.setattr(targets, "get", lambda name: target)
    ep = verify.Endpoint(f"http://{address}:8080", f"http://{address}:9090/metrics", API_KEY)
    try:
        outcomes = verify.run(Context(Config()), "systemd", ep)
    finally:
        host.sh("rm -rf /var/lib/llm-optimizer/backups")  # the backup check's archive
    verify.print_table("systemd", outcomes)
    output = capsys.readouterr().out
    print(output)
    assert [(o.check, o.result) for o in outcomes] == [
        (check, verify.OK) for check in ("health", "round trip", "metrics", "restart", "backup")
    ], output
    ((old, new),) = vm.restarts
    assert new not in ("0", old)
    figures = re.search(r"(\d+) requests, (\d+) failed", output)
    assert figures is not None
    assert int(figures.group(1)) > 0
    assert int(figures.group(2)) == 0


def host_address(host: SystemdHost) -> str:
    """The VM container's address, which this host reaches directly."""
    return systemd_vm_run(
        [
            str(host.docker),
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            host.name,
        ]
    ).strip()


def test_stop_is_graceful(systemd_host: SystemdHost, installed: object) -> None:
    host = systemd_host
    host.sh(f"systemctl start {UNIT}")
    started = time.monotonic()
    host.sh(f"systemctl stop {UNIT}")
    took = time.monotonic() - started
    props = host.unit("Result", "ExecMainCode", "ExecMainStatus", "ActiveState")
    print(f"systemctl stop took {took:.1f} s; {props}")
    assert props == {
        "Result": "success",
        "ExecMainCode": "1",  # CLD_EXITED: it exited by itself, not killed by a signal
        "ExecMainStatus": "0",
        "ActiveState": "inactive",
    }
    journal = host.journal(30)
    assert "shutdown begun" in journal
    assert "stopped" in journal


def _wait_for_a_new_main_process(host: SystemdHost, old_pid: str, what: str) -> float:
    """Seconds until the unit is active again with a main process other than ``old_pid``."""
    return host.wait_for(
        what,
        lambda: (
            host.unit("MainPID", "ActiveState")["ActiveState"] == "active"
            and host.unit("MainPID")["MainPID"] not in ("0", old_pid)
        ),
        timeout=60,
    )


def test_kill_9_is_followed_by_a_restart(systemd_host: SystemdHost, installed: object) -> None:
    host = systemd_host
    host.sh(f"systemctl reset-failed {UNIT} || true; systemctl start {UNIT}")
    before = host.unit("MainPID", "NRestarts")
    host.sh(f"kill -9 {before['MainPID']}")
    took = _wait_for_a_new_main_process(host, before["MainPID"], "a restart after kill -9")
    after = host.unit("MainPID", "NRestarts")
    print(f"kill -9: active again after {took:.1f} s (RestartSec=5s); {before} -> {after}")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert host.http_status("/health/ready") == 200
    journal = host.journal(40)
    assert "status=9/KILL" in journal


def test_watchdog_restarts_a_stalled_event_loop(
    systemd_host: SystemdHost, installed: object
) -> None:
    host = systemd_host
    host.sh(f"systemctl reset-failed {UNIT} || true; systemctl start {UNIT}")
    before = host.unit("MainPID", "NRestarts", "WatchdogUSec")
    assert before["WatchdogUSec"] == f"{WATCHDOG_SEC}s"
    # Healthy: the loop keeps pinging, so it outlives several watchdog periods.
    time.sleep(WATCHDOG_SEC * 1.2)
    assert host.unit("MainPID", "NRestarts") == {
        "MainPID": before["MainPID"],
        "NRestarts": before["NRestarts"],
    }
    assert host.http_status("/health/ready") == 200
    # Stalled: SIGUSR2 blocks the event loop (test-only trigger); pings stop.
    host.sh(f"kill -USR2 {before['MainPID']}")
    took = _wait_for_a_new_main_process(
        host, before["MainPID"], "the watchdog to restart the stalled service"
    )
    after = host.unit("MainPID", "NRestarts")
    print(f"watchdog: stalled service replaced after {took:.1f} s; {before} -> {after}")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    journal = host.journal(60)
    assert "Watchdog timeout" in journal
    assert host.http_status("/health/ready") == 200


def test_uninstall_keeps_data_then_purge_removes_everything(
    systemd_host: SystemdHost, installed: dict[str, object]
) -> None:
    host = systemd_host
    uninstall = "bash /opt/llm-optimizer/share/llm-optimizer/uninstall.sh"
    host.sh(f"systemctl start {UNIT}")
    output = host.out(uninstall)
    print(output)
    assert host.state() != "active"
    assert host.unit("LoadState")["LoadState"] == "not-found"
    assert host.sh("test -e /opt/llm-optimizer", check=False).returncode == 1
    assert host.sh(f"test -e /etc/systemd/system/{UNIT}", check=False).returncode == 1
    assert (
        host.sh(
            "test -e /etc/systemd/system/multi-user.target.wants/" + UNIT, check=False
        ).returncode
        == 1
    )
    # Kept: the data, and the configuration the operator edited or added (and its drop-in).
    assert host.out("ls /var/lib/llm-optimizer") == "llm-optimizer.db"
    assert host.out("ls /etc/llm-optimizer") == "api-keys\nllm-optimizer.env"
    assert host.out("id -u llm-optimizer")
    # Idempotent: a second run (from the release copy: the installed one is gone) succeeds.
    host.sh(f"bash {RELEASE_DIR}/uninstall.sh")

    purged = host.out(f"bash {RELEASE_DIR}/uninstall.sh --purge")
    print(purged)
    assert host.sh("id llm-optimizer", check=False).returncode == 1
    before = installed["before"]
    assert isinstance(before, set)
    left = {path for path in snapshot(host) - before if not path.startswith(IGNORED_AFTER_PURGE)}
    assert left == set(), f"left behind after --purge: {sorted(left)}"
