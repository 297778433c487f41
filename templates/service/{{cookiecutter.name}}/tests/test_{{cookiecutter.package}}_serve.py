"""The real command: ``serve`` on free ports in a subprocess, metrics on their own port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

PREFIX = "{{ cookiecutter.env_prefix }}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(http_port: int, metrics_port: int) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        f"{PREFIX}SERVER__HOST": "127.0.0.1",
        f"{PREFIX}SERVER__HTTP_PORT": str(http_port),
        f"{PREFIX}SERVER__METRICS_PORT": str(metrics_port),
        f"{PREFIX}LOG__JSON": "true",
    }
    return [sys.executable, "-m", "{{ cookiecutter.package }}", "serve"], env


@dataclass
class Running:
    process: subprocess.Popen[str]
    http: str
    metrics: str


@pytest.fixture
def running() -> Iterator[Running]:
    http_port, metrics_port = _free_port(), _free_port()
    argv, env = _command(http_port, metrics_port)
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    server = Running(process, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{server.http}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready in 20 s"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_serve_answers_health_and_exports_metrics(running: Running) -> None:
    assert httpx.get(f"{running.http}/health/live").status_code == 200
    metrics = httpx.get(f"{running.metrics}/metrics").text
    assert 'http_requests_total{method="GET",route="/health/live",status="200"}' in metrics
    assert "python_info{" in metrics  # the process and platform collectors are registered too
    assert httpx.get(f"{running.http}/metrics").status_code == 404  # metrics only on their port


def test_sigterm_stops_cleanly(running: Running) -> None:
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=15) == 0


def test_busy_port_is_one_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv, env = _command(busy.getsockname()[1], _free_port())
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{PREFIX}SERVER__HTTP_PORT" in result.stderr
