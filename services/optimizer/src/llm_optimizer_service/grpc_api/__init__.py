"""The gRPC API: ``llm_optimizer.v1.Optimizer`` (service.py), health and reflection (server.py),
the grpc_server_* metrics (metrics.py). Stubs in ``_generated/`` come from
``services/optimizer/proto`` via ``nox -s proto``."""

from llm_optimizer_service.grpc_api.server import GrpcServer, grpc_server

__all__ = ["GrpcServer", "grpc_server"]
