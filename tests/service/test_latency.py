"""Keep-alive requests answer in milliseconds: every accepted connection of the REST and metrics
ports has TCP_NODELAY (without it Nagle's algorithm and the client's delayed ACK add ~40 ms to
every request after the first on a connection), and gRPC's too."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

import grpc
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc
from llm_optimizer_service.server import bind

from tests._support.service import RunningService

ROUNDS = 50
P50_LIMIT_MS = 10.0  # Nagle + delayed ACK would put it near 40 ms
# A scrape renders every series (~50 KB after one workload): 4.8 ms median by hand on a quiet
# 2-core machine, 10.8 ms in a cold CI run beside the Go builds (5 Dec). Nagle would add ~40 ms.
SCRAPE_P50_LIMIT_MS = 25.0


def _keep_alive_latencies(port: int, request: bytes, rounds: int = ROUNDS) -> list[float]:
    """Milliseconds per request, sequential, all on one keep-alive connection."""
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        stream = sock.makefile("rb")
        for _ in range(rounds):
            start = time.perf_counter()
            sock.sendall(request)
            status = stream.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            assert len(stream.read(length)) == length
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def test_accepted_sockets_have_tcp_nodelay() -> None:
    """What asyncio hands the protocol: the listener from server.bind, a real connection."""
    listener = bind("127.0.0.1", 0, "HTTP_PORT")
    seen: list[int] = []

    async def main() -> None:
        def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert len(seen) == 1
    assert seen[0] != 0


def test_keep_alive_decide_answers_in_milliseconds(running_service: RunningService) -> None:
    with running_service.client() as client:
        arms = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]
        created = client.post("/api/v1/workloads", json={"name": "latency", "arms": arms})
        assert created.status_code == 201, created.text
    body = b"{}"
    request = (
        b"POST /api/v1/workloads/latency/decide HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {running_service.api_key}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    latencies = _keep_alive_latencies(running_service.http_port, request)
    assert statistics.median(latencies) < P50_LIMIT_MS, sorted(latencies)
    scrape = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    latencies = _keep_alive_latencies(running_service.metrics_port, scrape, rounds=20)
    assert statistics.median(latencies) < SCRAPE_P50_LIMIT_MS, sorted(latencies)


def test_grpc_decide_answers_in_milliseconds(running_service: RunningService) -> None:
    with running_service.client() as client:
        arms = [{"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]
        created = client.post("/api/v1/workloads", json={"name": "latency-grpc", "arms": arms})
        assert created.status_code == 201, created.text
    metadata = (("authorization", f"Bearer {running_service.api_key}"),)
    latencies: list[float] = []
    with grpc.insecure_channel(f"127.0.0.1:{running_service.grpc_port}") as channel:
        stub = pb_grpc.OptimizerStub(channel)
        for _ in range(ROUNDS):
            start = time.perf_counter()
            reply = stub.Decide(pb.DecideRequest(workload="latency-grpc"), metadata=metadata)
            latencies.append((time.perf_counter() - start) * 1000)
            assert reply.arm in {"a", "b"}
    assert statistics.median(latencies) < P50_LIMIT_MS, sorted(latencies)
