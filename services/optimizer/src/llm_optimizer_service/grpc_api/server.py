"""The gRPC listener (``server.grpc_port``): ``llm_optimizer.v1.Optimizer``, the standard
``grpc.health.v1.Health`` and server reflection (``grpcurl -plaintext HOST:PORT list``).

Health follows readiness: NOT_SERVING until the runtime has loaded its policies, SERVING once it
is ready, NOT_SERVING again as soon as shutdown begins (the lifecycle hooks drive it), for the
overall server (``""``) and for ``llm_optimizer.v1.Optimizer``. It is started by ``serve`` next to
the HTTP API (``server.EXTRA_SERVERS``) and stopped when shutdown begins, letting RPCs in
flight finish within the grace period.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from llm_optimizer_service.grpc_api import decoding, metrics
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc
from llm_optimizer_service.grpc_api.service import SERVICE_NAME, OptimizerServicer
from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.runtime import Runtime
from llm_optimizer_service.settings import Settings

log = get_logger(__name__)

HEALTH_SERVICES = ("", SERVICE_NAME)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OPTIMIZER_METHODS = tuple(pb.DESCRIPTOR.services_by_name["Optimizer"].methods_by_name)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _wrap(full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The contract's metrics on every method; tolerant decoding on the Optimizer's (metrics
    outermost, so the INVALID_ARGUMENT of an undecodable request is counted)."""
    if full_method.startswith(f"/{SERVICE_NAME}/"):
        handler = decoding.tolerant(handler)
    return metrics.instrument(full_method, handler)


class _Wrapped(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A registered service's lookup, each method's handler wrapped on its first call and kept."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        known = self._wrapped.get(details.method)
        if known is None or known[0] is not handler:
            known = self._wrapped[details.method] = (handler, _wrap(details.method, handler))
        return known[1]


class _Registrar:
    """What the generated ``add_*_to_server`` functions are given instead of the server: the
    handlers they register reach it wrapped (``_wrap``): once, at registration, where server
    interceptors would wrap them again on every call."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_Wrapped(h) for h in handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        wrapped = {name: _wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        self._server.add_registered_method_handlers(service, wrapped)


class GrpcServer:
    """One ``grpc.aio`` server; created after ``create_app`` so tracing instruments it."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.reuse_port = False  # SO_REUSEPORT on the gRPC port (see server.serve)
        self._server: grpc.aio.Server | None = None
        runtime.hooks.on_ready.append(self._serving)
        runtime.hooks.on_stopping.append(self._not_serving)

    async def _set(self, status: int) -> None:
        for name in HEALTH_SERVICES:
            await self.health.set(name, status)

    async def _serving(self) -> None:
        await self._set(SERVING if self.runtime.ready else NOT_SERVING)

    async def _not_serving(self) -> None:
        await self._set(NOT_SERVING)

    async def start(self) -> None:
        """Listen on ``server.host:server.grpc_port``; OSError naming the setting if it cannot."""
        host, port = self.settings.server.host, self.settings.server.grpc_port
        limit = max(self.settings.server.max_request_bytes, MAX_MESSAGE_BYTES)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                # Off: a second instance on the port is an error, not a silent share; on only
                # when the service manager starts instances side by side (server.serve).
                ("grpc.so_reuseport", int(self.reuse_port)),
            ],
        )
        registrar: Any = _Registrar(server)  # duck-types the server for the add_* functions
        add_optimizer: Any = pb_grpc.add_OptimizerServicer_to_server  # generated, untyped
        add_optimizer(OptimizerServicer(self.runtime), registrar)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, registrar)
        # enable_server_reflection(), spelled out: it picks the asyncio servicer only when
        # given a grpc.aio.Server itself
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
            ),
            registrar,
        )
        metrics.initialize((*OPTIMIZER_METHODS, "Check", "Watch"))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            bound = 0
            reason = str(exc)
        else:
            reason = "address in use or not available"
        if bound == 0:
            raise OSError(
                f"cannot listen for gRPC on {address} ({reason}); free the port or set "
                "LLM_OPTIMIZER_SERVER__GRPC_PORT"
            )
        await self._set(SERVING if self.runtime.ready else NOT_SERVING)
        await server.start()
        self._server, self.port = server, bound
        log.info("listening", grpc=f"{host}:{bound}")

    async def stop(self, grace: float) -> None:
        """NOT_SERVING, refuse new RPCs, let those in flight finish within ``grace`` seconds."""
        await self._not_serving()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None


def grpc_server(settings: Settings, runtime: Runtime) -> GrpcServer:
    """The factory ``server.EXTRA_SERVERS`` calls."""
    return GrpcServer(settings, runtime)
