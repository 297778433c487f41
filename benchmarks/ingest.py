"""Feedback ingestion and the cost of the multi-replica refresh, against real service processes.

1. Feedback ingestion in events/s, side by side: REST single (``POST /feedback``), REST batch
   (``POST /feedback/batch``, 500 per request), gRPC unary (``RecordFeedback``), gRPC stream
   (``StreamFeedback``) and Kafka (produced to ``llm-optimizer.feedback``, timed until the
   service has counted them all). One service on a throwaway PostgreSQL, every event durable
   (committed) before it is acknowledged; 16 concurrent callers where the transport allows.
2. Decide throughput with one replica against two replicas sharing that database (each
   reloading its policies every second), driven by the same raw HTTP load generator as
   ``http_decide``. On one machine both replicas share its cores, so the figure to read is the
   per-replica cost of the refresh, not scaling.

Needs PostgreSQL's initdb/pg_ctl (``invoke setup``) and the tansu broker (Kafka part; skipped
with a note when absent).
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
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ops.core import tools
from tests._support.ports import free_port
from tests._support.postgres import postgres_server

from .common import Options, Target, table
from .http_decide import _load, _request

CONCURRENCY = 16
ARMS = [{"name": f"arm-{i}", "model": f"model-{i}"} for i in range(4)]


@contextmanager
def _broker() -> Iterator[str | None]:
    binary = tools.which("tansu")
    if binary is None:
        yield None
        return
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


class Service:
    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.key = secrets.token_urlsafe(24)
        (directory / "keys").write_text(f"{self.key}\n")
        self.port, self.grpc_port = free_port(), free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
        full.update(
            {
                "LLM_OPTIMIZER_DATA_DIR": str(directory),
                "LLM_OPTIMIZER_SERVER__HTTP_PORT": str(self.port),
                "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(self.grpc_port),
                "LLM_OPTIMIZER_SERVER__METRICS_PORT": str(free_port()),
                "LLM_OPTIMIZER_AUTH__API_KEYS_FILE": str(directory / "keys"),
                "LLM_OPTIMIZER_LOG__LEVEL": "WARNING",
                **env,
            }
        )
        command = [sys.executable, "-c", "from llm_optimizer_service.cli import main; main()",
                   "serve"]  # fmt: skip
        self.log = directory / "service.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=full, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def wait(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited early; see {self.log}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the service did not become ready within 120 s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)

    def feedback_count(self) -> int:
        stats = httpx.get(f"{self.url}/api/v1/admin/stats", headers=self.headers, timeout=10)
        return int(stats.json()["feedback"])


def _body(decision_id: str) -> dict[str, Any]:
    return {"decision_id": decision_id, "quality": 0.7, "cost_usd": 0.001, "latency_ms": 80}


async def _decisions(service: Service, count: int) -> list[str]:
    import grpc
    from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
    from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc

    metadata = (("authorization", f"Bearer {service.key}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub: Any = pb_grpc.OptimizerStub(channel)  # type: ignore[no-untyped-call]
        ids: list[str] = []

        async def worker(n: int) -> None:
            for _ in range(n):
                reply = await stub.Decide(pb.DecideRequest(workload="bench"), metadata=metadata)
                ids.append(reply.decision_id)

        share = count // CONCURRENCY + 1
        await asyncio.gather(*(worker(share) for _ in range(CONCURRENCY)))
    return ids[:count]


async def _rest_single(service: Service, ids: list[str]) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=service.url, headers=service.headers,
                                 limits=limits, timeout=30) as client:  # fmt: skip
        queue = list(ids)

        async def worker() -> None:
            while queue:
                answer = await client.post("/api/v1/feedback", json=_body(queue.pop()))
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _rest_batch(service: Service, ids: list[str]) -> None:
    async with httpx.AsyncClient(base_url=service.url, headers=service.headers,
                                 timeout=60) as client:  # fmt: skip
        chunks = [ids[i : i + 500] for i in range(0, len(ids), 500)]

        async def send(chunk: list[str]) -> None:
            answer = await client.post(
                "/api/v1/feedback/batch", json={"items": [_body(i) for i in chunk]}
            )
            answer.raise_for_status()

        await asyncio.gather(*(send(chunk) for chunk in chunks))


async def _grpc(service: Service, ids: list[str], stream: bool) -> None:
    import grpc
    from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
    from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc

    metadata = (("authorization", f"Bearer {service.key}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub: Any = pb_grpc.OptimizerStub(channel)  # type: ignore[no-untyped-call]
        requests = [pb.FeedbackRequest(**_body(i)) for i in ids]
        if stream:
            acks = 0
            async for _ack in stub.StreamFeedback(iter(requests), metadata=metadata):
                acks += 1
            assert acks == len(ids)
            return
        queue = list(requests)

        async def worker() -> None:
            while queue:
                await stub.RecordFeedback(queue.pop(), metadata=metadata)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _kafka(service: Service, brokers: str, ids: list[str]) -> float:
    from aiokafka import AIOKafkaProducer

    before = service.feedback_count()
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        sends = [
            await producer.send("llm-optimizer.feedback", json.dumps(_body(i)).encode(), key=b"b")
            for i in ids
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    while service.feedback_count() < before + len(ids):
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


def _ingestion(options: Options, url: str, brokers: str | None, tmp: Path) -> list[tuple[str, Any]]:
    env = {"LLM_OPTIMIZER_DATABASE__URL": url}
    if brokers:
        env |= {
            "LLM_OPTIMIZER_KAFKA__BROKERS": brokers,
            "LLM_OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": "3000",
        }
    service = Service(tmp, env)
    service.wait()
    results: list[tuple[str, Any]] = []
    try:
        httpx.post(f"{service.url}/api/v1/workloads", json={"name": "bench", "arms": ARMS},
                   headers=service.headers, timeout=10).raise_for_status()  # fmt: skip
        small, large = (300, 2000) if options.quick else (2000, 10000)
        runs: list[tuple[str, int, Callable[[list[str]], Coroutine[Any, Any, None]]]] = [
            ("REST single", small, lambda ids: _rest_single(service, ids)),
            ("REST batch (500)", large, lambda ids: _rest_batch(service, ids)),
            ("gRPC unary", small, lambda ids: _grpc(service, ids, stream=False)),
            ("gRPC stream", large, lambda ids: _grpc(service, ids, stream=True)),
        ]
        for name, count, call in runs:
            ids = asyncio.run(_decisions(service, count))
            started = time.perf_counter()
            asyncio.run(call(ids))
            results.append((name, count / (time.perf_counter() - started)))
        if brokers:
            ids = asyncio.run(_decisions(service, large))
            elapsed = asyncio.run(_kafka(service, brokers, ids))
            results.append(("Kafka", large / elapsed))
        else:
            results.append(("Kafka", "skipped: tansu not installed (invoke setup)"))
    finally:
        service.stop()
    return results


def _replicas(options: Options, url: str, tmp: Path) -> tuple[float, float]:
    seconds = 2.0 if options.quick else 5.0
    env = {"LLM_OPTIMIZER_DATABASE__URL": url}
    (tmp / "r1").mkdir()
    one = Service(tmp / "r1", env)
    one.wait()
    two: Service | None = None
    try:
        decide = _request("POST", "/api/v1/workloads/bench/decide", one.key, b"{}")
        asyncio.run(_load(one.port, decide, 1.0))
        single = asyncio.run(_load(one.port, decide, seconds))["rps"]
        (tmp / "r2").mkdir()
        two = Service(tmp / "r2", env)
        two.wait()
        other = _request("POST", "/api/v1/workloads/bench/decide", two.key, b"{}")
        asyncio.run(_load(two.port, other, 1.0))

        async def both() -> float:
            results = await asyncio.gather(
                _load(one.port, decide, seconds), _load(two.port, other, seconds)
            )
            return sum(r["rps"] for r in results)

        pair = asyncio.run(both())
    finally:
        one.stop()
        if two is not None:
            two.stop()
    return single, pair


def run(options: Options) -> list[Target]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as raw,
        postgres_server(tools.require) as pg,
    ):
        tmp, url = Path(raw), pg.url()
        with _broker() as brokers:
            (tmp / "ingest").mkdir()
            rates = _ingestion(options, url, brokers, tmp / "ingest")
        single, pair = _replicas(options, url, tmp)
    print("feedback ingestion, one service on PostgreSQL, acknowledged only when durable")
    print(table(("transport", "events/s"), [(n, r if isinstance(r, str) else f"{r:.0f}")
                                            for n, r in rates]))  # fmt: skip
    print("decide throughput (raw HTTP, 16 connections per replica), one PostgreSQL")
    print(table(("replicas", "decide req/s"), [("1", f"{single:.0f}"), ("2", f"{pair:.0f}")]))
    numeric = {n: r for n, r in rates if not isinstance(r, str)}
    best_bulk = max(numeric.get("REST batch (500)", 0), numeric.get("gRPC stream", 0))
    return [
        Target(
            "ingest",
            "bulk ingestion >= 5x REST single events/s",
            f"{best_bulk:.0f} vs {numeric['REST single']:.0f} events/s",
            best_bulk >= 5 * numeric["REST single"],
        ),
        Target(
            "ingest",
            "2 replicas on one DB >= 0.8x one replica's decide req/s (same cores)",
            f"{pair:.0f} vs {single:.0f} req/s",
            pair >= 0.8 * single,
        ),
    ]
