"""The REST API (FastAPI): thin routes over the runtime, the repository and the engine."""

from llm_optimizer_service.api.app import create_app

__all__ = ["create_app"]
