"""Run the app with uvicorn and the metrics endpoint on its own port.

Both sockets are bound here first, so a busy port is one clear error naming the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn
from prometheus_client import start_http_server

from {{ cookiecutter.package }} import metrics
from {{ cookiecutter.package }}.app import create_app
from {{ cookiecutter.package }}.settings import ENV_PREFIX, Settings


class PortInUseError(Exception):
    """A port the service needs is taken; the message names the setting to change."""


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown (exit -15); ours exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _bind(host: str, port: int, setting: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        variable = ENV_PREFIX + setting.upper().replace(".", "__")
        raise PortInUseError(
            f"cannot listen on {host}:{port} ({exc.strerror}); free it or set {variable}"
        ) from exc
    return sock


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers), then return."""
    http = _bind(settings.server.host, settings.server.http_port, "server.http_port")
    probe = _bind(settings.server.host, settings.server.metrics_port, "server.metrics_port")
    probe.close()  # prometheus_client binds its own socket; this only named a busy port
    metrics_server, _thread = start_http_server(
        settings.server.metrics_port, addr=settings.server.host, registry=metrics.REGISTRY
    )
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,  # logging_setup routes uvicorn through structlog
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    try:
        asyncio.run(_Server(config).serve(sockets=[http]))
    finally:
        metrics_server.shutdown()
        http.close()
