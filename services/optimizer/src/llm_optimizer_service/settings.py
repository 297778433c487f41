"""The service's one typed settings object.

Sources, highest priority first: keyword arguments (tests), environment variables
(``LLM_OPTIMIZER_`` prefix, ``__`` between nesting levels), ``*_FILE`` variables for secrets
(the file's content is the value, as with Docker/Kubernetes secrets), the optional config file
named by ``LLM_OPTIMIZER_CONFIG`` (YAML or TOML), then the defaults — which run on a laptop:
SQLite under the data dir, no Redis, no Kafka.

What ``environment=production`` refuses (missing or weak API keys, well-known passwords, ...) is
checked by :mod:`llm_optimizer_service.safety`, which can parse the API keys.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "LLM_OPTIMIZER_"
ENV_NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = f"{ENV_PREFIX}CONFIG"
FILE_SUFFIX = "_FILE"
# The default ports of the deployment contract (docs/configuration.md). The tooling holds the same
# facts in ops.core.project; tests/cli/test_default_ports.py checks that both agree.
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 50051
DEFAULT_METRICS_PORT = 9090
WORKERS_NEED_A_SERVER = "server.workers above 1 needs a database server, not the embedded SQLite"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llm-optimizer"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(_Section):
    """Where state lives. Unset ``url`` means SQLite at ``<data_dir>/llm-optimizer.db``."""

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host/db; "
        "unset = embedded SQLite under data_dir",
    )
    pool_size: int = Field(default=5, ge=1, le=200, description="connection pool size")
    max_overflow: int = Field(default=5, ge=0, le=200, description="extra connections allowed")
    auto_migrate: bool | None = Field(
        default=None,
        description="run migrations inside serve; default: on in development, refused in "
        "production",
    )


class RedisSettings(_Section):
    """Optional shared cache; unset = in-process state."""

    url: SecretStr | None = Field(default=None, description="redis://[:password@]host:port/db")
    rate_limit_per_minute: int = Field(
        default=0,
        ge=0,
        description="requests per API key per minute, shared by all replicas (needs url; 0 = off)",
    )


class KafkaSettings(_Section):
    """Optional broker for feedback ingestion and events; unset = no broker."""

    brokers: str | None = Field(default=None, description="comma-separated host:port list")
    session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        le=300_000,
        description="feedback consumer's group session timeout (a dead consumer's partitions "
        "move to another replica after this long)",
    )


class ServerSettings(_Section):
    """Listeners and lifecycle."""

    host: str = Field(default="127.0.0.1", description="bind address for the HTTP and gRPC APIs")
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=0, le=65535, description="REST API port")
    grpc_port: int = Field(default=DEFAULT_GRPC_PORT, ge=0, le=65535, description="gRPC API port")
    metrics_host: str | None = Field(
        default=None, description="bind address for /metrics; unset = host"
    )
    metrics_port: int = Field(
        default=DEFAULT_METRICS_PORT, ge=0, le=65535, description="Prometheus /metrics port"
    )
    grace_period: float = Field(
        default=25.0,
        gt=0,
        le=3600,
        description="seconds to finish in-flight requests after SIGTERM",
    )
    shutdown_delay: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="seconds to keep accepting requests after SIGTERM while readiness is 503 "
        "(lets load balancers drain); counted within grace_period",
    )
    max_request_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest accepted request body (413 above)"
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="seconds between lifecycle heartbeats (systemd watchdog)"
    )
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="event loop: uvloop when installed (auto), or asyncio's own (slower)",
    )
    http: Literal["auto", "httptools", "h11"] = Field(
        default="auto",
        description="HTTP/1.1 parser: httptools when installed (auto), or h11 (pure Python)",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="serving processes on the same ports (REST and gRPC), each on its own core; "
        "above 1 they share the database and Redis as replicas do, so PostgreSQL is required",
    )


class AuthSettings(_Section):
    """API keys. Production refuses to start without any."""

    api_keys_file: Path | None = Field(
        default=None, description="file with one key (or sha256:<hex>) per line, optional scopes"
    )
    api_keys: SecretStr | None = Field(
        default=None, description="comma-separated keys (each may carry ':scope+scope' suffix)"
    )


class LogSettings(_Section):
    """Structured logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_: bool = Field(default=False, alias="json", description="one JSON object per line")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OtelSettings(_Section):
    """OpenTelemetry trace export (OTLP/HTTP); unset = off."""

    endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint, e.g. http://collector:4318"
    )
    service_name: str = "llm-optimizer-service"


class OptimizerSettings(_Section):
    """The decision loop."""

    cycle_interval: float = Field(
        default=1.0,
        gt=0,
        description="seconds between re-estimation cycles (reload shared stats); the bound on "
        "how long another replica's promote, rollback or feedback takes to reach this one",
    )
    flush_interval: float = Field(
        default=0.05, gt=0, le=5, description="seconds between decision batch writes"
    )
    seed: int | None = Field(default=None, description="random seed (tests and simulations)")


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
    data_dir: Path = Field(default_factory=_default_data_dir, description="SQLite and local state")
    git_sha: str = Field(default="unknown", description="set at image build time")
    build_date: str = Field(default="unknown", description="set at image build time (ISO 8601)")
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    kafka: KafkaSettings = KafkaSettings()
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    log: LogSettings = LogSettings()
    otel: OtelSettings = OtelSettings()
    optimizer: OptimizerSettings = OptimizerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _WithoutFileVariables(settings_cls, env_settings),
            _SecretFileSource(settings_cls),
            _ConfigFileSource(settings_cls),
        )

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def database_url(self) -> str:
        """The effective SQLAlchemy URL (SQLite under data_dir when unset)."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'llm-optimizer.db'}"

    @property
    def auto_migrate(self) -> bool:
        if self.database.auto_migrate is None:
            return not self.is_production
        return self.database.auto_migrate


# --- sources -------------------------------------------------------------------------------


# auth.api_keys has no *_FILE variant: LLM_OPTIMIZER_AUTH__API_KEYS_FILE is the keys file itself.
_NO_FILE_VARIANT = frozenset({("auth", "api_keys")})


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Field paths (as tuples of field names) of secrets that take a *_FILE variable."""
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        sub = _section_type(field)
        if sub is not None:
            found.extend(_secret_paths(sub, (*prefix, name)))
        elif (
            annotation is not None
            and "SecretStr" in repr(annotation)
            and (*prefix, name) not in _NO_FILE_VARIANT
        ):
            found.append((*prefix, name))
    return found


def _section_type(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in path)


class _WithoutFileVariables(PydanticBaseSettingsSource):
    """The environment source minus the ``*_FILE`` variables, which _SecretFileSource reads."""

    def __init__(self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        values = self._env()
        for path in _secret_paths(Settings):
            target: Any = values
            for part in path[:-1]:
                target = target.get(part) if isinstance(target, dict) else None
            if isinstance(target, dict):
                target.pop(path[-1] + FILE_SUFFIX.lower(), None)
        return values


class _SecretFileSource(PydanticBaseSettingsSource):
    """``LLM_OPTIMIZER_X__Y_FILE=/path`` sets secret ``x.y`` to the file's content (stripped)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        env = {key.upper(): value for key, value in os.environ.items()}
        for path in _secret_paths(Settings):
            variable = _env_name(path) + FILE_SUFFIX
            if variable not in env or _env_name(path) in env:
                continue
            file = Path(env[variable])
            try:
                content = file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(
                    f"{variable}={file}: cannot read the secret file ({exc.strerror}); "
                    "point it at a readable file or unset it"
                ) from exc
            target = values
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = content
        return values


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The optional YAML or TOML file named by ``LLM_OPTIMIZER_CONFIG``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        location = os.environ.get(CONFIG_FILE_ENV)
        if not location:
            return {}
        return load_config_file(Path(location))


class SettingsError(Exception):
    """Settings that cannot be used; the message names the setting and the fix."""


def load_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or TOML (``*.toml``) config file into nested settings values."""
    where = f"{CONFIG_FILE_ENV}={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            f"{where}: cannot read the config file ({exc.strerror}); "
            "fix the path or unset the variable"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{where}: not a text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start} is not UTF-8); point it at a YAML or TOML file or unset the variable"
        ) from None
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    try:
        data: Any = tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise SettingsError(
            f"{where}: not valid {kind} ({detail}); fix the file (a .toml name is read as "
            "TOML, any other as YAML) or unset the variable"
        ) from exc
    if not data:
        raise SettingsError(
            f"{where}: the config file holds no settings (it is empty or only comments); "
            "write settings into it or unset the variable"
        )
    if not isinstance(data, dict):
        raise SettingsError(
            f"{where}: the top level is a {type(data).__name__}, not a mapping of settings "
            f"(e.g. `server:` then `  http_port: {DEFAULT_HTTP_PORT}`); fix the file"
        )
    unknown = sorted(str(key) for key in set(data) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; "
            f"valid top-level keys: {', '.join(sorted(Settings.model_fields))}"
        )
    return data


# --- introspection ---------------------------------------------------------------------------


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        sub = _section_type(field)
        if sub is not None:
            paths.append((*prefix, key))
            paths.extend(_leaf_paths(sub, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def env_var_names() -> set[str]:
    """Every environment variable the service reads (``LLM_OPTIMIZER_*``, incl. ``*_FILE``)."""
    names = {_env_name(path) for path in _leaf_paths(Settings)}
    names |= {_env_name(path) + FILE_SUFFIX for path in _secret_paths(Settings)}
    names.add(CONFIG_FILE_ENV)
    return names


# LLM_OPTIMIZER_* variables that belong to other programs sharing the prefix: the client CLI
# (API_URL, API_KEY) and the repository's tooling (OPS_*, TEST_*).
FOREIGN_PREFIXES = (
    f"{ENV_PREFIX}API_URL",
    f"{ENV_PREFIX}API_KEY",
    f"{ENV_PREFIX}OPS_",
    f"{ENV_PREFIX}TEST_",
)


def unknown_env_vars(environ: dict[str, str] | None = None) -> list[str]:
    """``LLM_OPTIMIZER_*`` variables set in the environment that no setting reads (typos)."""
    env = os.environ if environ is None else environ
    known = env_var_names()
    return sorted(
        name
        for name in (key.upper() for key in env)
        if name.startswith(ENV_PREFIX)
        and name not in known
        and not name.startswith(FOREIGN_PREFIXES)
    )


def secret_keys() -> set[str]:
    """Dotted keys of secret settings (masked by ``config show``)."""
    return {".".join(path) for path in _secret_paths(Settings)}


def env_name_for(key: str) -> str:
    """``server.http_port`` → ``LLM_OPTIMIZER_SERVER__HTTP_PORT``."""
    return _env_name(tuple(key.split(".")))


# --- loading and checks ------------------------------------------------------------------------


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem: the dotted key, its variable, and pydantic's message."""
    lines: list[str] = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        key = ".".join(loc)
        lines.append(f"{key} ({env_name_for(key)}): {item['msg']}")
    return lines


def workers_problem(settings: Settings) -> str | None:
    """Several workers write as replicas do: the embedded SQLite (one writer) cannot serve them."""
    if settings.server.workers > 1 and settings.database_url.startswith("sqlite"):
        return (
            f"{WORKERS_NEED_A_SERVER}: server.workers={settings.server.workers} runs that many "
            "processes that write decisions and feedback at once, and SQLite takes one writer; "
            "set LLM_OPTIMIZER_DATABASE__URL=postgresql+psycopg://USER:PASSWORD@HOST/DB (the "
            "workers share it as replicas do) or LLM_OPTIMIZER_SERVER__WORKERS=1"
        )
    return None


def load_settings(**overrides: Any) -> Settings:
    """Read settings from every source; raises SettingsError with readable lines."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = describe_validation_error(exc)
        config = os.environ.get(CONFIG_FILE_ENV)
        if config:
            lines.append(
                f"fix the value in the environment or in {CONFIG_FILE_ENV}={config} "
                "(the variable wins over the file)"
            )
        raise SettingsError("; ".join(lines)) from exc
    problem = workers_problem(settings)
    if problem:
        raise SettingsError(problem)
    return settings


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with every secret replaced by ``'***'`` (or None when unset)."""
    data: dict[str, Any] = settings.model_dump(mode="json", by_alias=True)
    for key in secret_keys():
        section, _, leaf = key.rpartition(".")
        target = data[section] if section else data
        if target.get(leaf) is not None:
            target[leaf] = "***"
    data["database"]["effective_url"] = _mask_url(settings.database_url)
    return data


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
