"""The ceiling the decide path is measured against: the bare framework in the same venv.

``python -m benchmarks.bare http PORT`` serves a FastAPI app with one POST endpoint that returns
a small JSON body and nothing else (no middleware, no auth, no state), through the service's own
listener (:func:`llm_optimizer_service.server.bind`), uvicorn settings
(:func:`~llm_optimizer_service.server.uvicorn_config`) and event loop
(:func:`~llm_optimizer_service.server.run`), read from the same ``LLM_OPTIMIZER_SERVER__*``
environment as the service: one process, one loop, like ``serve``.

``python -m benchmarks.bare grpc PORT`` serves a bare ``grpc.aio`` servicer of the service's own
``llm_optimizer.v1.Optimizer`` whose Decide returns a fixed answer.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc
from llm_optimizer_service.server import bind, implementations, run, uvicorn_config
from llm_optimizer_service.settings import Settings, load_settings

ANSWER = {
    "decision_id": "0190a6d0-0000-7000-8000-000000000000",
    "arm": "arm-0",
    "config": {"model": "model-0", "provider": None, "params": {}, "prompt_variant": None},
    "propensity": 0.5,
}


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/bare")
    async def bare() -> dict[str, Any]:
        return ANSWER

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def serve_http(port: int, settings: Settings) -> None:
    server = uvicorn.Server(uvicorn_config(bare_app(), "127.0.0.1", port, settings, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[bind("127.0.0.1", port, "HTTP_PORT")]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    print(f"bare http on {port}: {implementations(server.config)}", flush=True)
    await task


class BareOptimizer(pb_grpc.OptimizerServicer):  # generated, untyped
    async def Decide(self, request: pb.DecideRequest, context: Any) -> pb.DecideResponse:  # noqa: N802
        return pb.DecideResponse(
            decision_id=str(ANSWER["decision_id"]),
            arm="arm-0",
            config=pb.ArmConfig(model="model-0"),
            propensity=0.5,
        )


async def serve_grpc(port: int) -> None:
    server = grpc.aio.server()
    add: Any = pb_grpc.add_OptimizerServicer_to_server  # generated, untyped
    add(BareOptimizer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"bare grpc on {port}", flush=True)
    await stop.wait()
    await server.stop(1)


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    settings = load_settings()
    run(serve_http(port, settings) if kind == "http" else serve_grpc(port), settings)


if __name__ == "__main__":
    main(sys.argv[1:])
