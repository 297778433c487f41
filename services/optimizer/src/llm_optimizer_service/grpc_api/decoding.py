"""Requests the server cannot decode — malformed bytes, or a message nested past protobuf's
recursion limit (a ``context`` of ~50 nested objects) — are answered INVALID_ARGUMENT naming the
problem. gRPC itself decodes before any servicer code runs and answers such a request UNKNOWN.

:func:`tolerant` gives each Optimizer method a deserializer that returns an
:class:`Undecodable` instead of raising. A unary method answers it at once; in a request stream
the servicer meets it like any other message and refuses it (``service.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError


class Undecodable:
    """Stands for a request message that could not be decoded."""

    def __init__(self, error: Exception) -> None:
        self.message = (
            f"the request message cannot be decoded ({error}); send a valid message, nested "
            "less deeply than protobuf's limit of 100 levels"
        )


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return Undecodable(exc)

    return decode


def tolerant(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a deserializer that returns :class:`Undecodable` instead of raising; a
    unary method answers that INVALID_ARGUMENT. Applied once per method at registration."""
    decode = _tolerant(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        # StreamFeedback: the servicer refuses an Undecodable met in the stream
        return grpc.stream_stream_rpc_method_handler(
            handler.stream_stream, request_deserializer=decode, response_serializer=serialize
        )
    if handler.request_streaming or handler.response_streaming:
        return handler  # no such method in the service today
    unary = handler.unary_unary

    async def checked(request: Any, context: Any) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await unary(request, context)

    return grpc.unary_unary_rpc_method_handler(
        checked, request_deserializer=decode, response_serializer=serialize
    )
