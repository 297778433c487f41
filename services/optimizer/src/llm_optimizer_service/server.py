"""``llm-optimizer-service serve``: the REST and gRPC APIs and the metrics endpoint in one process.

Shutdown (SIGTERM or SIGINT): readiness and liveness answer 503 at once; for
``server.shutdown_delay`` seconds new requests are still served (so load balancers notice the
503 and stop sending); then the listeners close, requests in flight finish, queued decisions are
written, and the process exits 0 — all within ``server.grace_period`` seconds, after which
whatever is still running is cut off (the exit code is still 0: the shutdown was asked for).

Extension points:
- :class:`~llm_optimizer_service.runtime.LifecycleHooks` (``on_ready``, ``on_stopping``,
  ``on_heartbeat`` from the event loop): systemd's sd_notify is wired here (READY=1,
  STOPPING=1, WATCHDOG=1 via :mod:`llm_optimizer_service.sdnotify`);
- :data:`EXTRA_SERVERS`: factories of further servers (the gRPC API; the Kafka bridge, inert
  without ``kafka.brokers``) started and stopped with the HTTP one.

With ``server.workers`` above 1, ``serve`` becomes the supervisor of that many worker processes
(:mod:`llm_optimizer_service.supervisor`), each of which runs :func:`serve` with a
:class:`Worker`: the REST socket comes from the supervisor, gRPC binds with SO_REUSEPORT beside
the other workers, and /metrics is the supervisor's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_optimizer_service import metrics
from llm_optimizer_service.api import create_app, hot_path
from llm_optimizer_service.grpc_api import GrpcServer, grpc_server
from llm_optimizer_service.kafka_ingest import kafka_bridge
from llm_optimizer_service.listenfds import inherited_sockets, reuses_port
from llm_optimizer_service.logging_setup import configure_logging, get_logger
from llm_optimizer_service.runtime import LifecycleHooks, Runtime
from llm_optimizer_service.sdnotify import SystemdNotifier
from llm_optimizer_service.settings import Settings, load_settings, workers_problem
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.supervisor import Listeners, supervise

log = get_logger(__name__)
T = TypeVar("T")
# With handed-over sockets, how long shutdown waits for keep-alive connections to close after
# an answer (each answer now says Connection: close) before closing the idle rest.
HANDOVER_DRAIN_S = 1.0


class ExtraServer(Protocol):
    """A server started after the HTTP API is ready and stopped when shutdown begins."""

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


EXTRA_SERVERS: list[Callable[[Settings, Runtime], ExtraServer]] = [grpc_server, kafka_bridge]


@dataclass(frozen=True)
class Worker:
    """One of ``server.workers`` processes (:mod:`llm_optimizer_service.supervisor`)."""

    index: int
    http_socket: socket.socket  # bound and listening, made by the supervisor
    handed_over: bool  # the supervisor got it by socket activation (shared by every worker)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ours decides what SIGTERM means."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_app(registry: CollectorRegistry = REGISTRY) -> Starlette:
    """Only /metrics (Prometheus text format); everything else is 404."""

    async def scrape(_: Request) -> Response:
        return Response(
            metrics.generate_latest(registry),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    return Starlette(routes=[Route("/metrics", scrape)])


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``server.loop`` asks for: uvloop (``auto`` when it is installed), or None
    for asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run ``main`` on the event loop ``server.loop`` names (what ``serve`` runs on)."""
    with asyncio.Runner(loop_factory=loop_factory(settings.server.loop)) as runner:
        return runner.run(main)


def implementations(config: uvicorn.Config) -> dict[str, str]:
    """Which event loop and HTTP parser a loaded uvicorn config runs on (for the log)."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    parser = config.http_protocol_class.__name__  # H11Protocol, HttpToolsProtocol
    return {"loop": loop, "http_parser": "httptools" if "HttpTools" in parser else "h11"}


def uvicorn_config(
    app: Any, host: str, port: int, settings: Settings, **extra: Any
) -> uvicorn.Config:
    """uvicorn as every listener of the service runs it (and the benchmark's bare app)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=settings.server.http,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.server.grace_period),
        **extra,
    )


def systemd_hooks(hooks: LifecycleHooks) -> SystemdNotifier:
    # READY=1 and the watchdog start in serve(), once every listener accepts connections.
    notifier = SystemdNotifier.from_environ()
    if notifier.enabled:

        def stopping() -> None:
            notifier.stopping()

        hooks.on_stopping.append(stopping)
    return notifier


async def serve(settings: Settings, worker: Worker | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    problem = await preflight(settings)
    if problem:
        log.error(problem)
        return 1
    if worker is None and settings.server.workers > 1:
        try:
            listeners = worker_listeners(settings)
        except OSError as exc:
            log.error(str(exc))
            return 1

        def metrics_server(registry: CollectorRegistry) -> _Server:
            return _Server(
                uvicorn_config(
                    metrics_app(registry),
                    settings.server.metrics_host or settings.server.host,
                    settings.server.metrics_port,
                    settings,
                    lifespan="off",
                )
            )

        problem = workers_problem(settings)  # load_settings said so already; Settings() did not
        if problem:
            log.error(problem)
            return 1
        entry = f"from {__name__} import {worker_main.__name__} as main; raise SystemExit(main())"
        return await supervise(settings, listeners, metrics_server, entry)
    hooks = LifecycleHooks()
    notifier = systemd_hooks(hooks)
    app: FastAPI = create_app(settings, hooks)
    runtime: Runtime = app.state.runtime
    http = _Server(
        uvicorn_config(
            closing_while_draining(hot_path.wrap(app, settings), runtime),
            settings.server.host,
            settings.server.http_port,
            settings,
            lifespan="on",
        )
    )
    scrape = None
    if worker is None:  # a worker's metrics are served by the supervisor
        scrape = _Server(
            uvicorn_config(
                metrics_app(),
                settings.server.metrics_host or settings.server.host,
                settings.server.metrics_port,
                settings,
                lifespan="off",
            )
        )
    extras: list[ExtraServer] = []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    # socket activation (systemd, the local deploy); a worker's socket comes from its supervisor
    handed_over = inherited_sockets() if worker is None else {}
    metrics_socket = None
    try:
        if worker is None:
            http_socket = listener(
                handed_over, settings.server.host, settings.server.http_port, "HTTP_PORT"
            )
            metrics_socket = listener(
                handed_over,
                settings.server.metrics_host or settings.server.host,
                settings.server.metrics_port,
                "METRICS_PORT",
            )
        else:
            http_socket = worker.http_socket
            http_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A manager that hands over SO_REUSEPORT sockets starts the next instance beside this
        # one, and workers serve gRPC side by side: gRPC, which binds its own port, must let
        # them bind too.
        share_grpc = worker is not None or any(reuses_port(s) for s in handed_over.values())
        for port, unused in handed_over.items():
            if unused not in (http_socket, metrics_socket):
                log.warning("a handed-over socket matches no listener; closing it", port=port)
                unused.close()
        # Listening before the runtime is ready: gRPC health says NOT_SERVING until it is.
        for factory in EXTRA_SERVERS:
            extra = factory(settings, runtime)
            if share_grpc and isinstance(extra, GrpcServer):
                extra.reuse_port = True
            await extra.start()
            extras.append(extra)
    except OSError as exc:
        log.error(str(exc))
        for extra in extras:
            await extra.stop(0)
        return 1
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]), name="http")
    metrics_task = None
    if scrape is not None and metrics_socket is not None:
        metrics_task = asyncio.create_task(scrape.serve(sockets=[metrics_socket]), name="metrics")
    stop_task = asyncio.create_task(stop.wait(), name="signal")
    while not http.started and not http_task.done() and not stop.is_set():
        await asyncio.sleep(0.02)
    if http_task.done():  # failed to start (schema not at head, port taken, ...)
        if scrape is not None and metrics_task is not None:
            scrape.should_exit = True
            await metrics_task
        stop_task.cancel()
        for extra in extras:
            await extra.stop(0)
        return 1
    where: dict[str, Any] = {"worker": worker.index} if worker is not None else {}
    if worker is None:
        where["metrics"] = (
            f"{settings.server.metrics_host or settings.server.host}:{settings.server.metrics_port}"
        )
    log.info(
        "listening",
        **implementations(http.config),
        http=f"{settings.server.host}:{settings.server.http_port}",
        **where,
        handed_over=sorted(handed_over),  # ports whose socket came by socket activation
    )
    # Type=notify: `systemctl start` returns only now, when every listener is up.
    notifier.ready()
    notifier.start_watchdog()

    watched = {http_task, stop_task} | ({metrics_task} if metrics_task is not None else set())
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    if stop_task not in done:
        log.error("a server stopped unexpectedly; shutting down")
        stop_task.cancel()
    code = await _shutdown(
        settings,
        runtime,
        (http, scrape, http_task, metrics_task),
        extras,
        handover=bool(handed_over) or (worker is not None and worker.handed_over),
    )
    await notifier.stop_watchdog()
    return 0 if stop_task in done else max(code, 1)


def listener(
    handed_over: dict[int, socket.socket], host: str, port: int, setting: str
) -> socket.socket:
    """The socket handed over for ``port`` (socket activation, :mod:`llm_optimizer_service.
    listenfds`), with TCP_NODELAY as :func:`bind` sets it, or else a socket bound here."""
    sock = handed_over.get(port) if port else None
    if sock is None:
        return bind(host, port, setting)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def bind(host: str, port: int, setting: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket, or OSError saying which setting to change.

    Every accepted connection gets TCP_NODELAY. Without it a keep-alive client waits about
    40 ms per request: uvicorn writes the headers and the body of an answer separately, Nagle
    holds the body back until the headers are acknowledged, and the client delays that ACK.
    asyncio sets the option only on sockets whose protocol is IPPROTO_TCP (``socket.
    create_server`` leaves it 0), so the socket is made with it; the option is also set on the
    listener, which Linux copies to each accepted socket whatever the event loop does.

    ``reuse_port`` (SO_REUSEPORT) lets several sockets listen on the port, the kernel spreading
    new connections over them: the supervisor of ``server.workers`` makes one per worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen on {host}:{port} ({exc.strerror}); free the port or set "
            f"LLM_OPTIMIZER_SERVER__{setting}"
        ) from exc
    return sock


def worker_listeners(settings: Settings) -> Listeners:
    """The supervisor's sockets: REST once per worker with SO_REUSEPORT (the kernel spreads new
    connections over them), or the handed-over REST socket shared by every worker; /metrics."""
    server = settings.server
    handed_over = inherited_sockets()
    made: list[socket.socket] = []
    try:
        shared = handed_over.get(server.http_port) if server.http_port else None
        if shared is not None:
            shared.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            http = [shared] * server.workers
        else:
            made.append(bind(server.host, server.http_port, "HTTP_PORT", reuse_port=True))
            port = made[0].getsockname()[1]  # the one the kernel chose when http_port is 0
            for _ in range(server.workers - 1):
                made.append(bind(server.host, port, "HTTP_PORT", reuse_port=True))
            http = list(made)
        scrape = listener(
            handed_over, server.metrics_host or server.host, server.metrics_port, "METRICS_PORT"
        )
    except OSError:
        for sock in made:
            sock.close()
        raise
    for port, unused in handed_over.items():
        if unused is not shared and unused is not scrape:
            log.warning("a handed-over socket matches no listener; closing it", port=port)
            unused.close()
    return Listeners(http, scrape, shared is not None)


def worker_main(argv: list[str] | None = None) -> int:
    """A worker of ``server.workers`` (started by the supervisor): the settings from the
    environment, the REST socket inherited as ``--fd``."""
    parser = argparse.ArgumentParser(prog="llm-optimizer-service worker")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--handed-over", action="store_true")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    settings = load_settings()  # the supervisor read the same ones: they are valid
    configure_logging(settings.log)
    http_socket = socket.socket(fileno=args.fd)
    return run(serve(settings, Worker(args.worker, http_socket, args.handed_over)), settings)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies (even by SIGKILL): no orphan keeps serving."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # pragma: no cover - it died before prctl
        os._exit(1)


async def preflight(settings: Settings) -> str | None:
    """Why serve must not start (production on a schema not at head), or None."""
    if settings.auto_migrate:
        return None
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        status = await asyncio.to_thread(migrations.schema_status, engine)
    except SQLAlchemyError as exc:
        return f"cannot read the schema version from the database: {exc}"
    finally:
        engine.dispose()
    if status.problem:
        return f"refusing to serve: {status.problem}"
    if status.at_head:
        return None
    return (
        f"refusing to serve: the database schema is at {status.current or 'nothing (empty)'} "
        f"but this release needs {status.head}; run `llm-optimizer-service db upgrade` first "
        "(production never migrates inside serve)"
    )


def closing_while_draining(app: Any, runtime: Runtime) -> Any:
    """The ASGI app, but once shutdown has begun every HTTP answer says ``Connection: close``.

    uvicorn then closes the connection after that answer, and a keep-alive client opens a new
    one for its next request (to the next instance, or the socket that waits for it) instead of
    sending it on a connection the server is about to close as idle, which fails it."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start" and runtime.draining:
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*kept, (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing)

    return wrapped


async def _drain_handed_over(http: uvicorn.Server, limit: float) -> None:
    """With handed-over sockets, stop accepting at once (connections wait in the manager's
    socket for the next process, or go to the instance beside this one), then give the open
    keep-alive connections up to ``limit`` seconds to be closed after an answer
    (:func:`closing_while_draining`); what is still idle after that is closed by uvicorn."""
    for server in http.servers:
        server.close()
    deadline = asyncio.get_running_loop().time() + limit
    while http.server_state.connections and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    log.info("drained", open_connections=len(http.server_state.connections))


async def _shutdown(
    settings: Settings,
    runtime: Runtime,
    servers: tuple[
        uvicorn.Server, uvicorn.Server | None, asyncio.Task[None], asyncio.Task[None] | None
    ],
    extras: list[ExtraServer],
    *,
    handover: bool,
) -> int:
    http, scrape, http_task, metrics_task = servers
    grace = settings.server.grace_period
    deadline = asyncio.get_running_loop().time() + grace
    await runtime.begin_shutdown()
    if handover:
        await _drain_handed_over(http, min(HANDOVER_DRAIN_S, grace / 2))
    else:
        delay = min(settings.server.shutdown_delay, grace / 2)
        if delay:
            log.info("draining: still serving while load balancers notice", seconds=delay)
            await asyncio.sleep(delay)
    for extra in extras:
        await _bounded(extra.stop(max(deadline - asyncio.get_running_loop().time(), 0.1)), deadline)
    http.should_exit = True
    remaining = deadline - asyncio.get_running_loop().time() - 0.5
    http.config.timeout_graceful_shutdown = max(math.floor(remaining), 1)
    finished = await _bounded(asyncio.shield(http_task), deadline)
    if not finished:
        log.warning("grace period over; cutting off what is still running", grace_period=grace)
        http.force_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(http_task, 1.0)
    if scrape is not None and metrics_task is not None:
        scrape.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(metrics_task, 2.0)
    log.info("stopped")
    return 0


async def _bounded(awaitable: Awaitable[Any], deadline: float) -> bool:
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(awaitable, max(remaining, 0.01))
    except TimeoutError:
        return False
    return True
