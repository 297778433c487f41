"""The decide path over HTTP: concurrent keep-alive clients on 127.0.0.1 hit ``POST /decide`` and
a trivial endpoint (``GET /version``: same middleware, access log and metrics; no auth,
no policy) of the same ``llm-optimizer-service serve`` process, in
the same run; req/s, p50 and p99 for each, and the throughput ratio (target: decide >= 0.7x).

The service runs as a real subprocess (SQLite in a temporary data dir, an API key file), so
decide pays for everything it pays in production: auth, the in-memory policy, the response
model, metrics, the access log line and the background batch writer. The load generator is a
minimal HTTP/1.1 client on raw asyncio streams (an httpx client would be the bottleneck).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from .common import Options, Target, free_port, table

CONNECTIONS = 16
TARGET_RATIO = 0.7


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    port: int, request: bytes, stop_at: float, latencies: list[float], failures: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not status_line.startswith(b"HTTP/1.1 200"):
                failures.append(int(status_line.split()[1]))
    finally:
        writer.close()


async def _load(port: int, request: bytes, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(
        *(_connection(port, request, stop_at, latencies, failures) for _ in range(CONNECTIONS))
    )
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. HTTP {failures[0]}")
    p50, p99 = np.percentile(np.asarray(latencies) * 1000.0, [50, 99])
    return {"rps": len(latencies) / elapsed, "p50_ms": float(p50), "p99_ms": float(p99)}


def _start(directory: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    key = secrets.token_urlsafe(24)
    (directory / "keys").write_text(f"{key}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    env.update(
        {
            "LLM_OPTIMIZER_DATA_DIR": str(directory),
            "LLM_OPTIMIZER_SERVER__HTTP_PORT": str(port),
            "LLM_OPTIMIZER_SERVER__METRICS_PORT": str(free_port()),
            "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(free_port()),
            "LLM_OPTIMIZER_AUTH__API_KEYS_FILE": str(directory / "keys"),
            "LLM_OPTIMIZER_LOG__JSON": "true",
        }
    )
    command = [sys.executable, "-c", "from llm_optimizer_service.cli import main; main()", "serve"]
    log = (directory / "service.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited early; see {directory / 'service.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return process, port, key
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not become ready within 120 s")


def run(options: Options) -> list[Target]:
    seconds = 2.0 if options.quick else 6.0
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        process, port, key = _start(Path(tmp))
        try:
            arms = [{"name": f"arm-{i}", "model": f"model-{i}"} for i in range(8)]
            created = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/workloads",
                json={"name": "bench", "arms": arms},
                headers={"Authorization": f"Bearer {key}"},
            )
            created.raise_for_status()
            decide = _request(
                "POST", "/api/v1/workloads/bench/decide", key, json.dumps({}).encode()
            )
            trivial = _request("GET", "/version", key)
            asyncio.run(_load(port, trivial, 1.0))  # warm up both paths
            asyncio.run(_load(port, decide, 1.0))
            # trivial, decide, trivial: the average of the two trivial runs cancels slow drift
            first = asyncio.run(_load(port, trivial, seconds / 2))
            decided = asyncio.run(_load(port, decide, seconds))
            second = asyncio.run(_load(port, trivial, seconds / 2))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    trivial_result = {k: (first[k] + second[k]) / 2 for k in first}
    ratio = decided["rps"] / trivial_result["rps"]
    print(f"{CONNECTIONS} keep-alive connections, 127.0.0.1, workload of 8 arms (thompson)")
    print(
        table(
            ("endpoint", "req/s", "p50 ms", "p99 ms"),
            [
                (
                    "GET /version",
                    trivial_result["rps"],
                    trivial_result["p50_ms"],
                    trivial_result["p99_ms"],
                ),
                ("POST .../decide", decided["rps"], decided["p50_ms"], decided["p99_ms"]),
            ],
        )
    )
    print(f"decide / trivial throughput: {ratio:.2f}x")
    return [
        Target(
            "http_decide",
            f"decide >= {TARGET_RATIO}x trivial req/s",
            f"{ratio:.2f}x ({decided['rps']:.0f} vs {trivial_result['rps']:.0f} req/s)",
            ratio >= TARGET_RATIO,
        )
    ]
