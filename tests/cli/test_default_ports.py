"""The default ports agree everywhere they are set: the tooling's source (ops.core.project), the
service's settings and ``simulate``, and the client CLI's default URL (the CLI cannot import the
service, so it holds its own copy, checked here)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from urllib.parse import urlsplit

from llm_optimizer_cli.client import DEFAULT_API_URL
from llm_optimizer_cli.main import main_options
from llm_optimizer_service.cli import simulate
from llm_optimizer_service.settings import ServerSettings

from ops.core import project


def _default_port(function: Callable[..., object], parameter: str) -> int | None:
    return urlsplit(str(inspect.signature(function).parameters[parameter].default)).port


def test_the_client_cli_defaults_to_the_contract_http_port() -> None:
    assert urlsplit(DEFAULT_API_URL).port == project.HTTP_PORT
    assert _default_port(main_options, "api_url") == project.HTTP_PORT  # --api-url's default


def test_the_service_settings_default_to_the_contract_ports() -> None:
    server = ServerSettings()
    assert (server.http_port, server.grpc_port, server.metrics_port) == (
        project.HTTP_PORT,
        project.GRPC_PORT,
        project.METRICS_PORT,
    )


def test_simulate_defaults_to_the_contract_http_port() -> None:
    assert _default_port(simulate, "url") == project.HTTP_PORT
