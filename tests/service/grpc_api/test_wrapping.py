"""The interceptors wrap a method's handler once and reuse it while the server hands out the
same handler (``grpc_api/wrapping.py``); a different handler for the method is wrapped anew."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from llm_optimizer_service.grpc_api.decoding import DecodeErrorInterceptor
from llm_optimizer_service.grpc_api.metrics import MetricsInterceptor

DECIDE = "/llm_optimizer.v1.Optimizer/Decide"
EVALUATE = "/llm_optimizer.v1.Optimizer/Evaluate"


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method


async def _echo(request: Any, context: Any) -> Any:
    return request


@pytest.mark.parametrize(
    "interceptor",
    [MetricsInterceptor(), DecodeErrorInterceptor("llm_optimizer.v1.Optimizer")],
    ids=["metrics", "decoding"],
)
def test_each_method_is_wrapped_once_per_handler(interceptor: Any) -> None:
    first = grpc.unary_unary_rpc_method_handler(_echo)
    second = grpc.unary_unary_rpc_method_handler(_echo)
    served = {"handler": first}

    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return served["handler"]

    def intercept(method: str) -> grpc.RpcMethodHandler:
        wrapped: grpc.RpcMethodHandler = asyncio.run(
            interceptor.intercept_service(continuation, _Details(method))
        )
        return wrapped

    wrapped = intercept(DECIDE)
    assert wrapped is not first  # wrapped, not passed through
    assert intercept(DECIDE) is wrapped
    assert intercept(EVALUATE) is not wrapped
    served["handler"] = second  # the server handed out another handler: wrapped anew
    rewrapped = intercept(DECIDE)
    assert rewrapped is not wrapped
    assert intercept(DECIDE) is rewrapped
