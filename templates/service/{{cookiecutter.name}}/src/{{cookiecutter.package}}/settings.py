"""Typed settings: environment variables with the prefix below, nesting with ``__``.

Every key has a default that runs on a laptop, e.g.
``{{ cookiecutter.env_prefix }}SERVER__HTTP_PORT``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "{{ cookiecutter.env_prefix }}"
ENV_NESTED_DELIMITER = "__"


class ServerSettings(BaseModel):
    """Where the service listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    http_port: int = Field(default={{ cookiecutter.http_port }}, ge=1, le=65535)
    metrics_port: int = Field(default={{ cookiecutter.metrics_port }}, ge=1, le=65535)


class LogSettings(BaseModel):
    """Structured logging."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_: bool = Field(default=False, alias="json", description="one JSON object per line")


class Settings(BaseSettings):
    """Everything the service reads at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    environment: Literal["development", "production"] = "development"
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
