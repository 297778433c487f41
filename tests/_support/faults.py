"""Faults on a real connection: a TCP proxy in front of PostgreSQL that can lose the answer to one
COMMIT. The server commits; the client sees its connection drop and cannot know whether its
transaction happened. Stopping the server cannot hit that window on purpose (it lies between the
WAL flush and the reply); this proxy hits it every time."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

# The command as psycopg sends it (simple or extended protocol: the text ends with a NUL).
_COMMIT = b"COMMIT\x00"


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    drop_answer: bool = False

    def close(self) -> None:
        for end in (self.client, self.server):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


@dataclass
class LostCommitProxy:
    upstream: tuple[str, int]
    listener: socket.socket = field(init=False)
    lost: threading.Event = field(default_factory=threading.Event)  # an answer was dropped
    _armed: threading.Event = field(default_factory=threading.Event)
    _pairs: list[_Pair] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def lose_next_commit_answer(self) -> None:
        self.lost.clear()
        self._armed.set()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            pair = _Pair(client, socket.create_connection(self.upstream))
            self._pairs.append(pair)
            threading.Thread(target=self._to_server, args=(pair,), daemon=True).start()
            threading.Thread(target=self._to_client, args=(pair,), daemon=True).start()

    def _to_server(self, pair: _Pair) -> None:
        with contextlib.suppress(OSError):
            while data := pair.client.recv(65536):
                if _COMMIT in data and self._armed.is_set():
                    self._armed.clear()
                    pair.drop_answer = True  # before the server can answer
                pair.server.sendall(data)
        pair.close()

    def _to_client(self, pair: _Pair) -> None:
        with contextlib.suppress(OSError):
            while data := pair.server.recv(65536):
                if pair.drop_answer:  # the COMMIT's answer: the server has committed
                    self.lost.set()
                    break
                pair.client.sendall(data)
        pair.close()

    def close(self) -> None:
        self.listener.close()
        for pair in self._pairs:
            pair.close()


@contextlib.contextmanager
def lost_commit_proxy(host: str, port: int) -> Iterator[LostCommitProxy]:
    proxy = LostCommitProxy((host, port))
    threading.Thread(target=proxy.serve, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.close()
