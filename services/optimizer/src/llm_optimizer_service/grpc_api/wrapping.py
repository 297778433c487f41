"""What the server's interceptors share: each wraps a method's handler once, not per RPC."""

from __future__ import annotations

from collections.abc import Callable

import grpc


class WrappedHandlers:
    """An interceptor's wrapped handler per method, made on the method's first call: wrapping
    builds closures and a handler, and labels metrics, on every RPC otherwise. Reused only while
    the server hands out the same handler object for the method (it does: handlers are
    registered once); only methods the server has a handler for get here, so the cache is
    bounded by the services registered."""

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        wrap: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler],
    ) -> grpc.RpcMethodHandler:
        cached = self._by_method.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = wrap(method, handler)
        self._by_method[method] = (handler, wrapped)
        return wrapped
