"""A throwaway Redis server for tests: ``redis-server`` (Debian's, from the tool catalogue) on a
free 127.0.0.1 port, no persistence, its own temp dir; stopped on exit, even on failure.

    with redis_server() as server:
        server.url          # redis://127.0.0.1:PORT/0
        server.stop()       # an outage; server.start() brings it back (same port, empty)
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests._support.tools import free_port, require_tool, stop_process


@dataclass
class RedisServer:
    port: int
    directory: Path
    binary: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "redis-server did not start: "
                        + (self.directory / "redis.log").read_text(errors="replace")
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start a Redis server for the duration of the block."""
    binary = require_tool("redis-server")
    directory = Path(tempfile.mkdtemp(prefix="llm-optimizer-redis-"))
    server = RedisServer(free_port(), directory, binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
