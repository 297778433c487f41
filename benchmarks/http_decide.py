"""The decide path against the real ceiling: the bare framework in the same venv.

Concurrent keep-alive clients on 127.0.0.1 load, in the same run and interleaved (A B A B):
- ``POST /api/v1/workloads/{name}/decide`` of a real ``llm-optimizer-service serve`` process
  (SQLite in a temporary data dir, an 8-arm thompson workload, API keys: everything decide pays
  in production — auth, the policy, metrics, the access log line, the batch writer) against a
  bare FastAPI endpoint (``benchmarks/bare.py``: no middleware) run with the same uvicorn
  settings, event loop, HTTP parser and process model;
- ``POST /api/v1/feedback`` on fresh decisions (each id once) against the same bare endpoint;
- gRPC ``Decide`` against a bare ``grpc.aio`` servicer of the same service definition;
- ``GET /version`` of the same service, a second line: it pays the same middleware;
- ``server.workers``: decide on PostgreSQL with 1 and with 2 workers (A B A B), req/s and p99
  and the ratio; on a 2-core machine the load generator takes a core too, so the gain is bounded.

Targets: decide >= 0.7x the bare endpoint's req/s and decide p99 <= 3x the bare p99 (and the
same for feedback and gRPC). A second service and bare app on asyncio's own loop and h11 show
what uvloop and httptools give. A sampling profile (py-spy) of the service under decide load
prints the decision-log writer's share of the CPU and the hottest functions. The load generator
is a minimal HTTP/1.1 client on raw asyncio streams (an httpx client would be the bottleneck); it
shares the machine's cores with the servers, so figures are ratios measured side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc

from tests._support.ports import free_port

from .common import Options, Target, table

T = TypeVar("T")
CONNECTIONS = 32
TARGET_RATIO = 0.7
TARGET_P99 = 3.0
ROUNDS = 2  # A B A B
FAST = {"LLM_OPTIMIZER_SERVER__LOOP": "auto", "LLM_OPTIMIZER_SERVER__HTTP": "auto"}
PLAIN = {"LLM_OPTIMIZER_SERVER__LOOP": "asyncio", "LLM_OPTIMIZER_SERVER__HTTP": "h11"}
FEEDBACK = '{{"decision_id":"{}","quality":0.8,"cost_usd":0.001,"latency_ms":120}}'
DECISION_ID = re.compile(rb'"decision_id":"([0-9a-f-]{36})"')


def _run(main: Coroutine[Any, Any, T]) -> T:
    """The load generator runs on uvloop when it is installed: less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Figures:
    """Requests and latencies of one endpoint over all its slices."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the server process's CPU (all threads) over the slices

    @property
    def cpu_us(self) -> str:
        """The server's CPU per request in microseconds."""
        if not self.cpu_seconds or not self.latencies:
            return "-"
        return f"{self.cpu_seconds / len(self.latencies) * 1e6:.0f}"

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies) * 1000.0, q))

    def row(self, name: str) -> tuple[str, float, float, float, str]:
        return (name, self.rps, self.percentile(50), self.percentile(99), self.cpu_us)


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds so far of process ``pid``, all its threads, or of one of its
    threads (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ThreadShare:
    """How a process's CPU splits between its main thread (the event loop) and the rest."""

    main: float = 0.0
    others: float = 0.0

    @property
    def others_share(self) -> float:
        return self.others / ((self.main + self.others) or 1.0)


@contextlib.contextmanager
def _threads_of(pid: int, share: ThreadShare) -> Iterator[None]:
    """The main thread's and the other threads' CPU while the block runs (threads that end
    meanwhile are not counted; the service's worker threads live as long as it does)."""

    def per_thread() -> dict[int, float]:
        found = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found[int(task.name)] = _cpu_seconds(pid, int(task.name))
        return found

    before = per_thread()
    yield
    for tid, seconds in per_thread().items():
        spent = seconds - before.get(tid, 0.0)
        if tid == pid:
            share.main += spent
        else:
            share.others += spent


@contextlib.contextmanager
def _cpu_of(pid: int, figures: Figures) -> Iterator[None]:
    before = _cpu_seconds(pid)
    yield
    figures.cpu_seconds += _cpu_seconds(pid) - before


NextRequest = Callable[[], bytes | None]


async def _http_connection(
    port: int, next_request: NextRequest, stop_at: float, figures: Figures, ids: list[str] | None
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            request = next_request()
            if request is None:
                return
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
            body = await reader.readexactly(length)
            figures.latencies.append(time.perf_counter() - start)
            if not status_line.startswith((b"HTTP/1.1 200", b"HTTP/1.1 202")):
                figures.failures.append(f"{status_line.decode().strip()} {body[:200]!r}")
            elif ids is not None:
                found = DECISION_ID.search(body)
                if found:
                    ids.append(found.group(1).decode())
    finally:
        writer.close()


async def _http_load(
    port: int, next_request: NextRequest, seconds: float, figures: Figures, ids: list[str] | None
) -> None:
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _http_connection(port, next_request, started + seconds, figures, ids)
            for _ in range(CONNECTIONS)
        )
    )
    figures.seconds += time.perf_counter() - started


async def _load(port: int, request: bytes, seconds: float) -> dict[str, float]:
    """One request, repeated on every connection for ``seconds``: req/s, p50 and p99 in ms."""
    figures = Figures()
    await _http_load(port, lambda: request, seconds, figures, None)
    if figures.failures:
        raise RuntimeError(f"{len(figures.failures)} requests failed, e.g. {figures.failures[0]}")
    return {"rps": figures.rps, "p50_ms": figures.percentile(50), "p99_ms": figures.percentile(99)}


async def _grpc_load(port: int, key: str, seconds: float, figures: Figures) -> None:
    metadata = (("authorization", f"Bearer {key}"),)
    request = pb.DecideRequest(workload="bench")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.OptimizerStub(channel)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                await stub.Decide(request, metadata=metadata)
                figures.latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        figures.seconds += time.perf_counter() - started


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path

    def banner(self, pattern: str) -> str:
        """The first log line that contains ``pattern`` (what the server says it runs on)."""
        for line in self.log.read_text(errors="replace").splitlines():
            if pattern in line:
                return line
        return "?"


def _spawn(
    command: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]
) -> Process:
    handle = log.open("wb")
    process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[-2:]} exited early; see {log}")
        with contextlib.suppress(httpx.HTTPError, OSError):
            if ready():
                return Process(process, log)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[-2:]} did not become ready within 120 s; see {log}")


def _base_env(directory: Path, implementation: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_OPTIMIZER_")}
    env.update(implementation)
    env.update({"LLM_OPTIMIZER_DATA_DIR": str(directory), "LLM_OPTIMIZER_LOG__JSON": "true"})
    return env


@dataclass
class Service:
    process: Process
    port: int
    grpc_port: int
    key: str


def _service(
    directory: Path, implementation: dict[str, str], extra: dict[str, str] | None = None
) -> Service:
    directory.mkdir()
    key = secrets.token_urlsafe(24)
    (directory / "keys").write_text(f"{key}\n")
    port, grpc_port = free_port(), free_port()
    env = _base_env(directory, implementation)
    env.update(
        {
            "LLM_OPTIMIZER_SERVER__HTTP_PORT": str(port),
            "LLM_OPTIMIZER_SERVER__METRICS_PORT": str(free_port()),
            "LLM_OPTIMIZER_SERVER__GRPC_PORT": str(grpc_port),
            "LLM_OPTIMIZER_AUTH__API_KEYS_FILE": str(directory / "keys"),
            **(extra or {}),
        }
    )
    command = [sys.executable, "-c", "from llm_optimizer_service.cli import main; main()", "serve"]

    workers = int((extra or {}).get("LLM_OPTIMIZER_SERVER__WORKERS", "1"))

    def ready() -> bool:
        if workers > 1 and '"all workers ready"' not in (directory / "service.log").read_text():
            return False
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200

    process = _spawn(command, env, directory / "service.log", ready)
    arms = [{"name": f"arm-{i}", "model": f"model-{i}"} for i in range(8)]
    created = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/workloads",
        json={"name": "bench", "arms": arms},
        headers={"Authorization": f"Bearer {key}"},
    )
    created.raise_for_status()
    return Service(process, port, grpc_port, key)


def _bare(directory: Path, kind: str, implementation: dict[str, str]) -> tuple[Process, int]:
    directory.mkdir(exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.bare", kind, str(port)]
    log = directory / f"bare-{kind}-{implementation['LLM_OPTIMIZER_SERVER__LOOP']}.log"

    def ready() -> bool:
        if kind == "grpc":
            return "bare grpc on" in log.read_text()
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200

    env = _base_env(directory, implementation)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), *sys.path])
    return _spawn(command, env, log, ready), port


@contextlib.contextmanager
def _stopped_at_exit() -> Iterator[list[Process]]:
    processes: list[Process] = []
    try:
        yield processes
    finally:
        for started in processes:
            started.process.send_signal(signal.SIGTERM)
        for started in processes:
            try:
                started.process.wait(60)
            except subprocess.TimeoutExpired:
                started.process.kill()


def _profile(pid: int, seconds: float, load: Callable[[], None]) -> Counter[str] | str:
    """py-spy's raw stacks of ``pid`` sampled while ``load`` runs; or why there are none (the
    load runs either way: the per-thread CPU is measured around it)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        load()
        return "py-spy is not installed (the bench dependency group has it)"
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        command = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                   "--rate", "250", "--format", "raw", "--nonblocking",
                   "--output", out.name]  # fmt: skip
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        load()
        _, errors = spy.communicate(timeout=seconds + 30)
        if spy.returncode != 0:
            return f"py-spy failed: {errors.decode(errors='replace').strip()[-300:]}"
        stacks: Counter[str] = Counter()
        for line in Path(out.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                stacks[stack] += int(count)
        return stacks


# Where the event loop's thread spends decide's CPU: (component, a frame name in the stack); the
# first rule whose frame is in a sample's stack takes it. Worker threads' samples are left out
# (their CPU comes from /proc: py-spy counts a thread waiting to retake the GIL as working).
# Rules marked "self:" look at the innermost frame only.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("socket writes of the answer (uvicorn transport.write)", "RequestResponseCycle.send"),
    ("access log line", "LineLogger.info"),
    ("access log line", "BoundLogger.info"),
    ("API key check (KeyRing.principal)", "KeyRing.principal"),
    ("HTTP metrics", "prometheus_client"),
    ("body checks (content type, non-finite numbers)", "body_checks.py"),
    ("decide: the policy (engine)", "engine/policy.py"),
    ("decide: decision id, PendingDecision, decision queue", "runtime.py"),
    ("decide route: body read, parse, validate, scope check", "get_route_handler"),
    ("decide route: body read, parse, validate, scope check", "deps.py"),
    ("FastAPI dependency solving", "solve_dependencies"),
    ("routing (route matching)", "matches ("),
    ("self:our middleware", "middleware.py"),
    ("self:FastAPI / Starlette layers", "starlette/"),
    ("self:FastAPI / Starlette layers", "fastapi/"),
    ("self:uvicorn protocol (httptools parse, task start)", "uvicorn/"),
    ("event loop and the rest", ""),
)
WORKER_THREAD = "Thread._bootstrap"


def _components(stacks: Counter[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for stack, n in stacks.items():
        if WORKER_THREAD in stack:
            continue
        for name, frame in COMPONENTS:
            innermost = name.startswith("self:")
            if frame in (stack.rsplit(";", 1)[-1] if innermost else stack):
                found[name.removeprefix("self:")] += n
                break
    return found


def _print_profile(stacks: Counter[str] | str, threads: ThreadShare, requests: int) -> None:
    """decide's CPU per request: the worker threads' from /proc, the event loop thread's from
    /proc split by py-spy's samples of that thread."""
    per_request = 1e6 / max(requests, 1)
    writer_us, loop_us = threads.others * per_request, threads.main * per_request
    print(
        f"CPU per decide under load (/proc per-thread times, {requests} decides while py-spy "
        f"sampled): event loop thread {loop_us:.0f} us, worker threads (the decision-log "
        f"writer; the reload loop's reads) {writer_us:.0f} us: {threads.others_share:.1%} of "
        "the process's CPU"
    )
    if isinstance(stacks, str):
        print(f"profile: {stacks}")
        return
    components = _components(stacks)
    total = sum(components.values()) or 1
    own: Counter[str] = Counter()
    for stack, n in stacks.items():
        if WORKER_THREAD not in stack:
            own[stack.rsplit(";", 1)[-1]] += n
    print(
        f"the event loop thread's {loop_us:.0f} us by component: its share of that thread's "
        f"{total} py-spy samples x {loop_us:.0f} us (sampling favours lines that make system "
        "calls)"
    )
    print(
        table(
            ("us/req", "%", "component"),
            [
                (f"{loop_us * n / total:.1f}", f"{100 * n / total:.1f}", name)
                for name, n in components.most_common()
            ],
        )
    )
    print(
        table(
            ("self %", "function"), [(f"{100 * n / total:.1f}", f) for f, n in own.most_common(12)]
        )
    )


def _ratio_targets(name: str, bare: Figures, measured: Figures) -> list[Target]:
    ratio = measured.rps / bare.rps
    p99 = measured.percentile(99) / bare.percentile(99)
    print(
        f"{name} / bare: throughput {ratio:.2f}x (target >= {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}), p99 {p99:.2f}x (target <= "
        f"{TARGET_P99}x: {'met' if p99 <= TARGET_P99 else 'MISSED'})"
    )
    return [
        Target(
            "http_decide",
            f"{name} >= {TARGET_RATIO}x bare req/s",
            f"{ratio:.2f}x ({measured.rps:.0f} vs {bare.rps:.0f} req/s)",
            ratio >= TARGET_RATIO,
        ),
        Target(
            "http_decide",
            f"{name} p99 <= {TARGET_P99}x bare p99",
            f"{p99:.2f}x ({measured.percentile(99):.1f} vs {bare.percentile(99):.1f} ms)",
            p99 <= TARGET_P99,
        ),
    ]


def run(options: Options) -> list[Target]:
    slice_seconds = 0.5 if options.quick else 2.0
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, _stopped_at_exit() as started:
        root = Path(tmp)
        service = _service(root / "service", FAST)
        started.append(service.process)
        plain = _service(root / "service-plain", PLAIN)
        started.append(plain.process)
        bare_process, bare_port = _bare(root, "http", FAST)
        started.append(bare_process)
        plain_bare_process, plain_bare_port = _bare(root, "http", PLAIN)
        started.append(plain_bare_process)
        grpc_bare, grpc_bare_port = _bare(root, "grpc", FAST)
        started.append(grpc_bare)

        bare_request = _request("POST", "/bare", service.key, b"{}")
        decide_path = "/api/v1/workloads/bench/decide"
        decide = _request("POST", decide_path, service.key, b"{}")
        plain_decide = _request("POST", decide_path, plain.key, b"{}")
        trivial = _request("GET", "/version", service.key)
        ids: list[str] = []

        def feedback() -> bytes | None:
            if not ids:
                return None
            body = FEEDBACK.format(ids.pop()).encode()
            return _request("POST", "/api/v1/feedback", service.key, body)

        figures = {name: Figures() for name in (
            "bare", "decide", "trivial", "feedback", "plain_bare", "plain_decide",
            "grpc_bare", "grpc_decide")}  # fmt: skip

        pids = {port: started_process.process.pid for port, started_process in (
            (service.port, service.process), (plain.port, plain.process),
            (bare_port, bare_process), (plain_bare_port, plain_bare_process),
            (service.grpc_port, service.process), (grpc_bare_port, grpc_bare))}  # fmt: skip

        def http(port: int, request: NextRequest, name: str, keep: list[str] | None = None) -> None:
            with _cpu_of(pids[port], figures[name]):
                _run(_http_load(port, request, slice_seconds, figures[name], keep))

        def grpc_slice(port: int, name: str) -> None:
            with _cpu_of(pids[port], figures[name]):
                _run(_grpc_load(port, service.key, slice_seconds, figures[name]))

        # warm up every path (and collect the first decisions for feedback)
        warm = Figures()
        _run(_http_load(bare_port, lambda: bare_request, 0.5, warm, None))
        _run(_http_load(plain_bare_port, lambda: bare_request, 0.5, warm, None))
        _run(_http_load(service.port, lambda: decide, 0.5, warm, ids))
        _run(_http_load(plain.port, lambda: plain_decide, 0.5, warm, None))
        _run(_grpc_load(service.grpc_port, service.key, 0.5, warm))
        _run(_grpc_load(grpc_bare_port, service.key, 0.5, warm))
        for _ in range(ROUNDS):
            http(bare_port, lambda: bare_request, "bare")
            http(service.port, lambda: decide, "decide", ids)
            http(service.port, lambda: trivial, "trivial")
            http(plain_bare_port, lambda: bare_request, "plain_bare")
            http(plain.port, lambda: plain_decide, "plain_decide")
            grpc_slice(grpc_bare_port, "grpc_bare")
            grpc_slice(service.grpc_port, "grpc_decide")
        time.sleep(0.5)  # the last decisions are written (flush interval)
        for _ in range(ROUNDS):
            http(bare_port, lambda: bare_request, "bare")
            http(service.port, feedback, "feedback")
        for name, measured in figures.items():
            if measured.failures:
                raise RuntimeError(
                    f"{name}: {len(measured.failures)} failed, e.g. {measured.failures[0]}"
                )
        profile_seconds = 2.0 if options.quick else 5.0
        threads, profiled = ThreadShare(), Figures()
        with _threads_of(service.process.process.pid, threads):
            stacks = _profile(
                service.process.process.pid,
                profile_seconds,
                lambda: _run(
                    _http_load(service.port, lambda: decide, profile_seconds, profiled, None)
                ),
            )
        runs_on = service.process.banner('"http_parser"')
        plain_runs_on = plain.process.banner('"http_parser"')

    def on(line: str) -> str:
        found = re.search(r'"http_parser": "(\w+)".*"loop": "(\w+)"', line) or re.search(
            r'"loop": "(\w+)".*"http_parser": "(\w+)"', line
        )
        return "/".join(sorted(found.groups())) if found else "?"

    print(
        f"{CONNECTIONS} keep-alive connections, 127.0.0.1, workload of 8 arms (thompson), "
        f"SQLite, one process each; {ROUNDS} interleaved slices of {slice_seconds:.1f} s"
    )
    print(f"service runs on {on(runs_on)}; the plain pair on {on(plain_runs_on)}")
    print(
        table(
            ("endpoint", "req/s", "p50 ms", "p99 ms", "server CPU us/req"),
            [
                figures["bare"].row("bare FastAPI POST (same settings)"),
                figures["decide"].row("POST .../decide"),
                figures["feedback"].row("POST /api/v1/feedback"),
                figures["trivial"].row("GET /version (same server)"),
                figures["plain_bare"].row("bare FastAPI, asyncio loop + h11"),
                figures["plain_decide"].row("POST .../decide, asyncio loop + h11"),
                figures["grpc_bare"].row("bare grpc.aio Decide"),
                figures["grpc_decide"].row("gRPC Decide"),
            ],
        )
    )
    trivial_ratio = figures["decide"].rps / figures["trivial"].rps
    speedup = figures["decide"].rps / figures["plain_decide"].rps
    print(f"decide / GET /version of the same server: {trivial_ratio:.2f}x")
    print(f"decide on uvloop + httptools / on asyncio + h11: {speedup:.2f}x")
    targets = [
        *_ratio_targets("decide", figures["bare"], figures["decide"]),
        *_ratio_targets("feedback", figures["bare"], figures["feedback"]),
        *_ratio_targets("gRPC Decide", figures["grpc_bare"], figures["grpc_decide"]),
    ]
    _print_profile(stacks, threads, len(profiled.latencies))
    targets.append(
        Target(
            "http_decide",
            "decision-log writer share of CPU (worker threads, /proc)",
            f"{threads.others_share:.1%} of the process's CPU",
            threads.main > 0,
        )
    )
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, _stopped_at_exit() as more:
        targets.extend(run_workers(options, Path(tmp), more))
    return targets


def run_workers(options: Options, root: Path, started: list[Process]) -> list[Target]:
    """decide with ``server.workers`` 1 and 2 on one PostgreSQL, interleaved."""
    from ops.core import tools
    from tests._support.postgres import postgres_server

    slice_seconds = 0.5 if options.quick else 2.0
    with postgres_server(tools.require) as pg:
        services = {}
        for workers in (1, 2):
            extra = {
                "LLM_OPTIMIZER_DATABASE__URL": pg.create_database("bench"),
                "LLM_OPTIMIZER_SERVER__WORKERS": str(workers),
            }
            services[workers] = _service(root / f"workers-{workers}", FAST, extra)
            started.append(services[workers].process)
        figures = {workers: Figures() for workers in services}
        requests = {
            workers: _request("POST", "/api/v1/workloads/bench/decide", svc.key, b"{}")
            for workers, svc in services.items()
        }
        time.sleep(1.5)  # every worker has loaded the workload (cycle interval)
        for workers, svc in services.items():  # warm up
            _run(_http_load(svc.port, _constant(requests[workers]), 0.5, Figures(), None))
        for _ in range(ROUNDS):
            for workers, svc in services.items():
                load = _http_load(
                    svc.port, _constant(requests[workers]), slice_seconds, figures[workers], None
                )
                _run(load)
        for name, measured in figures.items():
            if measured.failures:
                raise RuntimeError(f"workers={name}: {measured.failures[0]}")
        for process in started[-2:]:  # stop them before PostgreSQL goes
            process.process.send_signal(signal.SIGTERM)
            process.process.wait(60)
    one, two = figures[1], figures[2]
    ratio = two.rps / one.rps
    print(
        f"server.workers on PostgreSQL, decide, {CONNECTIONS} keep-alive connections, "
        f"{os.cpu_count()} cores (the load generator shares them):"
    )
    print(
        table(
            ("workers", "req/s", "p50 ms", "p99 ms", "server CPU us/req"),
            [one.row("1 (default)"), two.row("2")],
        )
    )
    p99 = two.percentile(99) / one.percentile(99)
    print(f"decide with 2 workers / 1 worker: {ratio:.2f}x req/s, p99 {p99:.2f}x")
    return [
        Target(
            "http_decide",
            "decide req/s with 2 workers vs 1 (PostgreSQL)",
            f"{ratio:.2f}x ({two.rps:.0f} vs {one.rps:.0f} req/s)",
            ratio > 1.0,
        )
    ]


def _constant(request: bytes) -> NextRequest:
    return lambda: request
