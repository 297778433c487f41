"""systemd's notify protocol (sd_notify) for ``Type=notify`` units, with watchdog pings.

Under systemd the service manager passes ``NOTIFY_SOCKET`` (and, with ``WatchdogSec=``,
``WATCHDOG_USEC``/``WATCHDOG_PID``). The service sends:

- ``READY=1`` once it is ready (migrations at head, policy state loaded: the same condition as
  ``/health/ready``), so ``systemctl start`` returns and dependent units start only then;
- ``STOPPING=1`` when shutdown begins (and the watchdog pings stop: see :meth:`stopping`);
- ``WATCHDOG=1`` every half of ``WATCHDOG_USEC``, **from the asyncio event loop**: a stalled
  loop stops the pings and systemd kills and restarts the service (``Restart=on-failure``).

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op, so the server calls these
unconditionally. The protocol is one datagram of newline-separated ``KEY=VALUE`` lines on a
Unix socket (``man sd_notify``); the standard library is all it needs.

The service never stalls itself on purpose: the watchdog test provokes a stall from outside
(tests/_support/stall_hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages to the socket systemd named, if any."""

    def __init__(
        self,
        socket_path: str | None,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
    ) -> None:
        self.socket_path = socket_path or None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """The notifier described by systemd's environment variables (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET"),
            _positive_int(env.get("WATCHDOG_USEC")),
            _positive_int(env.get("WATCHDOG_PID")),
        )

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self.socket_path is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec``), or None without a watchdog.

        ``WATCHDOG_PID`` names the process the watchdog is meant for; when it is set and is not
        this process (a child that inherited the environment), there is no watchdog here.
        """
        if not self.enabled or self._watchdog_usec is None:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 1_000_000 / 2

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; False when not under systemd or on error.

        A failure to notify must never take the service down, so errors are logged, not raised.
        """
        if self.socket_path is None:
            return False
        address = self.socket_path
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(payload)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        return True

    def ready(self, status: str = "ready") -> bool:
        """Tell systemd the service is ready: the unit becomes ``active``."""
        return self.notify("READY=1", f"STATUS={status}")

    def stopping(self, status: str = "draining in-flight requests") -> bool:
        """Tell systemd shutdown has begun, and stop the watchdog pings.

        systemd disarms the watchdog when it sends SIGTERM, but any later ``WATCHDOG=1`` arms
        it again; a drain or interpreter exit longer than ``WatchdogSec`` would then be killed
        as a hang (SIGABRT, ``Result=watchdog``). Shutdown is bounded by ``TimeoutStopSec=``.
        """
        if self._task is not None:
            self._task.cancel()
        return self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        """Set the free-form status line ``systemctl status`` shows."""
        return self.notify(f"STATUS={text}")

    def ping(self) -> bool:
        """One watchdog keep-alive."""
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping the watchdog every half interval, forever; a no-op without a watchdog.

        It runs as a task on the serving event loop on purpose: if the loop stalls, the pings
        stop, and systemd restarts the service. Never move it to a thread.
        """
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.ping()
            await asyncio.sleep(interval)

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """Start :meth:`watchdog_loop` on the running loop (idempotent); None without a watchdog."""
        if self.watchdog_interval is None:
            return None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.watchdog_loop(), name="systemd-watchdog"
            )
        return self._task

    async def stop_watchdog(self) -> None:
        """Cancel the watchdog task, if running."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _positive_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    number = int(value)
    return number if number > 0 else None
