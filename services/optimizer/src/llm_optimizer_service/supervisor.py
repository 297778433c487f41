"""``server.workers`` above 1: ``serve`` supervises that many worker processes.

The supervisor binds the REST port once per worker with SO_REUSEPORT (the kernel spreads new
connections over the sockets; a handed-over socket from socket activation is shared by every
worker instead), then starts each worker as a fresh interpreter running
:func:`llm_optimizer_service.server.worker_main` (no fork of a process with threads or an event
loop, so grpc.aio is safe) that inherits its socket and runs
:func:`llm_optimizer_service.server.serve`. Every worker serves REST and gRPC (gRPC binds the
port itself with SO_REUSEPORT) and is a full replica: its own snapshots and caches, decisions
and feedback in the shared database, Redis shared as replicas share it. That is why the
embedded SQLite is refused above one worker (:class:`~llm_optimizer_service.settings.Settings`).

What the supervisor does itself:
- /metrics on the metrics port: every worker's metrics, summed (prometheus_client's
  multiprocess mode in a private temporary directory, :func:`metrics.multiprocess_registry`);
- systemd: workers notify the supervisor's own notify socket; ``READY=1`` goes to systemd when
  every worker has said READY, ``STOPPING=1`` on SIGTERM, ``WATCHDOG=1`` from its event loop;
- SIGTERM/SIGINT: forwarded to every worker, each of which drains as a single process does;
  the supervisor waits up to ``server.grace_period`` (+ a margin), kills what is left, exits 0;
- a worker that exits on its own once the service was ready is restarted on the same socket
  (connections that arrived meanwhile wait in its queue); one that fails before the service was
  ready, or more than :data:`MAX_RESTARTS` restarts within :data:`RESTART_WINDOW_S`, stops the
  whole service with exit code 1 (systemd or Kubernetes then restart it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, multiprocess

from llm_optimizer_service import metrics
from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.sdnotify import SystemdNotifier
from llm_optimizer_service.settings import Settings

log = get_logger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
RESTART_DELAY_S = 0.5
KILL_MARGIN_S = 5.0  # after grace_period, before SIGKILL
POLL_S = 0.05
# Variables of the supervisor's own service manager that a worker must not act on.
_MANAGER_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class _Slot:
    index: int
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: list[float] = field(default_factory=list)


class _Supervisor:
    def __init__(self, settings: Settings, private: str, entry: str) -> None:
        self.settings = settings
        self.entry = entry
        self.private = private
        self.metrics_dir = os.path.join(private, "metrics")
        os.mkdir(self.metrics_dir)
        self.slots: list[_Slot] = []
        self.handed_over = False
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify_path = os.path.join(private, "notify")
        self.notify.bind(self.notify_path)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify.setblocking(False)
        self.all_ready = asyncio.Event()

    # --- workers ----------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _MANAGER_VARIABLES}
        env[metrics.MULTIPROC_DIR_ENV] = self.metrics_dir
        env["NOTIFY_SOCKET"] = self.notify_path
        return env

    def start(self, slot: _Slot) -> None:
        fd = slot.sock.fileno()
        command = [sys.executable, "-c", self.entry, "--worker", str(slot.index), "--fd", str(fd),
                   "--parent", str(os.getpid())]  # fmt: skip
        if self.handed_over:
            command.append("--handed-over")
        slot.ready = False
        slot.process = subprocess.Popen(command, env=self.environment(), pass_fds=(fd,))
        log.info("worker started", worker=slot.index, pid=slot.process.pid)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process and s.process.poll() is None]

    def on_notification(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            if b"READY=1" not in data.split(b"\n"):
                continue
            for slot in self.slots:
                if slot.process is not None and slot.process.pid == pid and not slot.ready:
                    slot.ready = True
                    log.info("worker ready", worker=slot.index, pid=pid)
            if all(slot.ready for slot in self.slots):
                self.all_ready.set()

    async def watch(self, stop: asyncio.Event) -> int:
        """Until ``stop``: restart workers that exit; returns 1 when the service must stop."""
        while not stop.is_set():
            for slot in self.slots:
                process = slot.process
                if process is None or process.poll() is None:
                    continue
                multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
                if not self.all_ready.is_set():
                    log.error(
                        "a worker exited before the service was ready; stopping (its log says why)",
                        worker=slot.index,
                        exit_code=process.returncode,
                    )
                    return 1
                now = time.monotonic()
                slot.restarts = [t for t in slot.restarts if now - t < RESTART_WINDOW_S]
                if len(slot.restarts) >= MAX_RESTARTS:
                    log.error(
                        "a worker keeps exiting; stopping so the service manager restarts us",
                        worker=slot.index,
                        exit_code=process.returncode,
                        restarts=len(slot.restarts),
                        window_s=RESTART_WINDOW_S,
                    )
                    return 1
                log.warning(
                    "a worker exited; restarting it",
                    worker=slot.index,
                    exit_code=process.returncode,
                )
                slot.restarts.append(now)
                slot.process = None
                await asyncio.sleep(RESTART_DELAY_S)
                self.start(slot)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
        return 0

    async def stop_all(self, *, graceful: bool) -> None:
        """SIGTERM every worker (each drains), wait up to the grace period, then SIGKILL."""
        if not self.handed_over:
            # only the workers hold their sockets now: a worker that closes its listener closes
            # the socket, so new connections are refused rather than left waiting in a queue
            for slot in self.slots:
                slot.sock.close()
        running = [s.process for s in self.slots if s.process and s.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        limit = self.settings.server.grace_period + KILL_MARGIN_S if graceful else KILL_MARGIN_S
        deadline = time.monotonic() + limit
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        for process in running:
            if process.poll() is None:
                log.warning("a worker did not stop in time; killing it", pid=process.pid)
                process.kill()
                process.wait()
        for slot in self.slots:
            slot.sock.close()


class MetricsServer(Protocol):
    """The uvicorn server of /metrics (made by :mod:`llm_optimizer_service.server`)."""

    should_exit: bool

    async def serve(self, sockets: list[socket.socket] | None = None) -> None: ...


@dataclass(frozen=True)
class Listeners:
    """What :func:`llm_optimizer_service.server.worker_listeners` bound for the supervisor."""

    http: list[socket.socket]  # one per worker, or the handed-over one for every worker
    metrics: socket.socket
    handed_over: bool


async def supervise(
    settings: Settings,
    listeners: Listeners,
    metrics_server: Callable[[CollectorRegistry], MetricsServer],
    worker_entry: str,
) -> int:
    """Run ``server.workers`` workers until SIGTERM/SIGINT; returns the exit code.

    ``worker_entry`` is the Python code (``python -c``) a worker runs, with the arguments
    ``--worker INDEX --fd FD --parent PID [--handed-over]``."""
    http_sockets, metrics_socket = listeners.http, listeners.metrics
    handed_over = listeners.handed_over
    private = tempfile.mkdtemp(prefix="llm-optimizer-workers-")
    notifier = SystemdNotifier.from_environ()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    supervisor = _Supervisor(settings, private, worker_entry)
    supervisor.handed_over = handed_over
    supervisor.slots = [_Slot(i, sock) for i, sock in enumerate(http_sockets)]
    loop.add_reader(supervisor.notify.fileno(), supervisor.on_notification)
    registry = metrics.multiprocess_registry(supervisor.metrics_dir, supervisor.pids)
    scrape = metrics_server(registry)
    metrics_task = asyncio.create_task(scrape.serve(sockets=[metrics_socket]), name="metrics")
    code = 0
    try:
        for slot in supervisor.slots:
            supervisor.start(slot)
        watcher = asyncio.create_task(supervisor.watch(stop), name="workers")
        ready = asyncio.create_task(supervisor.all_ready.wait(), name="ready")
        await asyncio.wait({watcher, ready, asyncio.create_task(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if supervisor.all_ready.is_set() and not watcher.done():
            log.info(
                "all workers ready",
                workers=settings.server.workers,
                http=f"{settings.server.host}:{settings.server.http_port}",
                grpc=f"{settings.server.host}:{settings.server.grpc_port}",
                metrics=f"{settings.server.metrics_host or settings.server.host}:"
                f"{settings.server.metrics_port}",
                pids=supervisor.pids(),
            )
            notifier.ready(f"ready ({settings.server.workers} workers)")
            notifier.start_watchdog()
        code = await watcher
        ready.cancel()
        notifier.stopping()
        log.info("stopping the workers", workers=settings.server.workers, graceful=code == 0)
        await supervisor.stop_all(graceful=code == 0)
    finally:
        loop.remove_reader(supervisor.notify.fileno())
        supervisor.notify.close()
        if any(s.process and s.process.poll() is None for s in supervisor.slots):
            await supervisor.stop_all(graceful=False)  # pragma: no cover - an error above
        scrape.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(metrics_task, 2.0)
        await notifier.stop_watchdog()
        shutil.rmtree(private, ignore_errors=True)
    log.info("stopped", exit_code=code)
    return code
