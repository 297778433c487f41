"""The sd_notify module against a real Unix datagram socket, the way systemd listens."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_optimizer_service.sdnotify import SystemdNotifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(2)


def test_no_socket_means_no_op() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval is None


def test_ready_and_stopping(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.ready() is True
    assert received(sock) == ["READY=1", "STATUS=ready"]
    assert notifier.stopping() is True
    assert received(sock)[0] == "STOPPING=1"


def test_abstract_socket_address() -> None:
    name = f"llm-optimizer-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert SystemdNotifier(f"@{name}").ping() is True
        assert received(sock) == ["WATCHDOG=1"]


def test_unreachable_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "absent.sock"))
    assert notifier.ready() is False
    assert "sd_notify" in caplog.text


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    listener: tuple[str, socket.socket], environ: dict[str, str], interval: float | None
) -> None:
    path, _ = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path, **environ})
    assert notifier.watchdog_interval == interval


def test_watchdog_pings_from_the_loop_and_stop_when_the_loop_stalls(
    listener: tuple[str, socket.socket],
) -> None:
    """Pings come every half interval while the loop runs, and none while it is blocked."""
    path, sock = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    async def scenario() -> tuple[int, int, int]:
        notifier.start_watchdog()
        await asyncio.sleep(0.32)  # pings at 0, 0.05, ..., 0.30
        running = len(drain(sock))
        time.sleep(0.3)  # the loop is blocked: no task runs
        stalled = len(drain(sock))
        await asyncio.sleep(0.12)
        resumed = len(drain(sock))
        await notifier.stop_watchdog()
        return running, stalled, resumed

    running, stalled, resumed = asyncio.run(scenario())
    assert running >= 5
    assert stalled == 0
    assert resumed >= 1


def test_no_pings_after_stopping(listener: tuple[str, socket.socket]) -> None:
    """A ping after SIGTERM would re-arm systemd's watchdog during a slow shutdown."""
    path, sock = listener
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    async def scenario() -> list[str]:
        notifier.start_watchdog()
        await asyncio.sleep(0.12)
        drain(sock)
        notifier.stopping()
        await asyncio.sleep(0.2)
        return drain(sock)

    after = asyncio.run(scenario())
    assert after[0].startswith("STOPPING=1")
    assert "WATCHDOG=1" not in after
